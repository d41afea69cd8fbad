"""One explicit key table per Hugging Face `model_type`: config.json keys <-> spec paths.

Every key a table knows is one entry:

* `Field(hf, path, default)`: one HF key is one spec value (optionally converted both ways, and optionally
  copied to `also` paths, e.g. `intermediate_size` is both the expert width and `ffn.hidden_dim`).
  `default` is transformers 5.23's class default, used when the key is absent.
* `Rule(keys, load, dump)`: several HF keys that only make sense together (rope, attention heads, which
  layers are MoE or sliding-window, group-limited routing ...).
* `Fixed(hf, allowed)`: a key whose other values change the architecture in a way no spec can express
  (e.g. DeepSeek's `attention_bias`); any other value is an error.
* `Const(path, value)`: what the family always is, with no key for it (Mixtral's renormalised router).
* `Ignore(hf, why)`: known keys without architectural effect; importing reports each one present.

A key in config.json that the table does not list is reported as unknown. The defaults, the key names and
the quirks are those of transformers 5.23 (`configuration_<model_type>.py` and the modeling code); where
transformers differs from the original release, the comment says which one the table follows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # a key transformers has no usable default for
_MISSING = object()

DROPOUT = "training-time dropout; moezoo models have none"
FIXED_EXPLAIN = "cannot be represented in a moezoo spec"


class ImportCtx:
    """State of one import: the raw config, the spec mapping being built, what was read, what went wrong."""

    def __init__(self, hf: dict, subconfigs: tuple[str, ...] = ()):
        self.hf = hf
        self.subconfigs = subconfigs
        self.spec: dict = {}
        self.sources: dict[tuple, list[str]] = {}
        self.seen: set[str] = set()
        self.warnings: list[str] = []
        self.errors: list[str] = []

    # -- reading HF keys (dotted for sub-configs: "attn_config.clip_qkv")
    def has(self, key: str) -> bool:
        node: Any = self.hf
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def raw(self, key: str, default: Any = None) -> Any:
        node: Any = self.hf
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def get(self, key: str, default: Any = REQUIRED, aliases: tuple[str, ...] = ()) -> Any:
        """The value of `key` (or of its first alias present), else `default`; marks them read."""
        self.seen.add(key)
        self.seen.update(aliases)
        present = [k for k in (key, *aliases) if self.has(k)]
        values = {k: self.raw(k) for k in present}
        if len({repr(v) for v in values.values()}) > 1:
            self.warnings.append(f"keys {', '.join(repr(k) for k in present)} disagree ("
                                 + ", ".join(f"{k}={v!r}" for k, v in values.items())
                                 + f"); using {present[0]!r}")
        if present:
            return values[present[0]]
        if default is REQUIRED:
            self.errors.append(f"missing key '{key}' (transformers has no usable default for it)")
            return None
        return default

    # -- writing spec paths
    def set(self, path: str, value: Any, *keys: str) -> None:
        node = self.spec
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        known = self.sources.setdefault(tuple(parts), [])
        known += [k for k in dict.fromkeys(keys) if k not in known]

    def lookup(self, path: str, default: Any = None) -> Any:
        node: Any = self.spec
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def error(self, message: str) -> None:
        self.errors.append(message)


def set_hf(hf: dict, key: str, value: Any) -> None:
    node = hf
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def spec_get(spec: Any, path: str) -> Any:
    """Value at a dotted path of a ModelSpec (attributes) or of a dumped mapping; None where absent."""
    node = spec
    for part in path.split("."):
        if node is None:
            return None
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
    return node


# --------------------------------------------------------------------------- entry kinds


@dataclass(frozen=True)
class Field:
    hf: str
    path: str
    default: Any = REQUIRED
    load: Callable[[Any, ImportCtx], Any] | None = None  # HF value -> spec value
    dump: Callable[[Any], Any] | None = None  # spec value -> HF value
    also: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # older names of the same key (read, never written)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.hf, *self.aliases)

    def do_load(self, ctx: ImportCtx) -> None:
        value = ctx.get(self.hf, self.default, self.aliases)
        if value is None and self.default is REQUIRED:
            return
        if self.load is not None:
            value = self.load(value, ctx)
        if value is _MISSING:
            return
        for path in (self.path, *self.also):
            ctx.set(path, value, self.hf)

    def do_dump(self, spec: Any, hf: dict, notes: list[str]) -> None:
        value = spec_get(spec, self.path)
        if self.dump is not None:
            value = self.dump(value)
        if value is not _MISSING:
            set_hf(hf, self.hf, value)


@dataclass(frozen=True)
class Rule:
    keys: tuple[str, ...]
    load: Callable[[ImportCtx], None]
    dump: Callable[[Any, dict, list[str]], None]
    doc: str = ""

    def do_load(self, ctx: ImportCtx) -> None:
        self.load(ctx)
        ctx.seen.update(self.keys)

    def do_dump(self, spec: Any, hf: dict, notes: list[str]) -> None:
        self.dump(spec, hf, notes)


@dataclass(frozen=True)
class Fixed:
    hf: str
    allowed: tuple
    why: str
    write: Any = _MISSING  # value written by export-hf

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.hf,)

    def do_load(self, ctx: ImportCtx) -> None:
        if ctx.has(self.hf):
            value = ctx.get(self.hf, None)
            if value not in self.allowed:
                ctx.error(f"key '{self.hf}' is {value!r}: {self.why}")

    def do_dump(self, spec: Any, hf: dict, notes: list[str]) -> None:
        if self.write is not _MISSING:
            set_hf(hf, self.hf, self.write)


@dataclass(frozen=True)
class Const:
    path: str
    value: Any
    doc: str = ""
    keys: tuple[str, ...] = ()

    def do_load(self, ctx: ImportCtx) -> None:
        ctx.set(self.path, self.value)

    def do_dump(self, spec: Any, hf: dict, notes: list[str]) -> None:
        pass  # checked by the round trip: a spec with another value is not this model_type


@dataclass(frozen=True)
class Ignore:
    hf: str
    why: str

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.hf,)

    def do_load(self, ctx: ImportCtx) -> None:
        if ctx.has(self.hf):
            ctx.seen.add(self.hf)
            ctx.warn(f"ignored key '{self.hf}' ({self.why})")

    def do_dump(self, spec: Any, hf: dict, notes: list[str]) -> None:
        pass


Entry = Field | Rule | Fixed | Const | Ignore


@dataclass(frozen=True)
class Table:
    model_type: str
    architecture: str  # the transformers causal-LM class export-hf names in `architectures`
    family: str
    entries: tuple[Entry, ...]
    subconfigs: tuple[str, ...] = ()  # nested config dicts whose keys the table lists one by one
    custom_code: bool = False  # not a transformers class (auto_map / trust_remote_code)
    doc: str = ""
    encoder_decoder: bool = False  # the model_type describes a T5-style encoder-decoder
    # Spec paths this config.json cannot carry at all; export keeps them in the `moezoo` key (not an error).
    non_architecture: tuple[tuple[str, ...], ...] = ()

    def known_keys(self) -> set[str]:
        out: set[str] = set()
        for entry in self.entries:
            out.update(getattr(entry, "keys", ()))
        return out


# --------------------------------------------------------------------------- keys every config may carry

# PreTrainedConfig's own fields and common metadata: never architecture.
COMMON: tuple[Ignore, ...] = tuple(
    Ignore(key, why)
    for why, keys in {
        "metadata": ("transformers_version", "_name_or_path", "_commit_hash"),
        "storage dtype of the checkpoint, not architecture": ("torch_dtype", "dtype"),
        "remote-code entry points; moezoo reads the keys itself": ("auto_map",),
        "inference setting": ("use_cache", "attn_implementation", "_attn_implementation", "max_length",
                              "min_length", "do_sample", "num_beams", "temperature", "top_p", "repetition_penalty",
                              "length_penalty", "no_repeat_ngram_size", "early_stopping", "num_return_sequences",
                              "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id", "typical_p",
                              "diversity_penalty", "num_beam_groups", "encoder_no_repeat_ngram_size",
                              "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
                              "begin_suppress_tokens", "output_scores", "return_dict_in_generate"),
        "output switch": ("output_router_logits", "output_attentions", "output_hidden_states", "return_dict",
                          "torchscript", "use_return_dict"),
        "tokenizer setting": ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
                              "decoder_start_token_id", "tokenizer_class", "prefix"),
        "initialisation only; moezoo's init_weights uses its own init_std": ("initializer_range",),
        "classification-head setting, unused by a causal LM": ("id2label", "label2id", "num_labels", "problem_type",
                                                               "finetuning_task", "task_specific_params"),
        "memory/speed setting": ("chunk_size_feed_forward", "use_bfloat16", "tf_legacy_loss"),
        "encoder-decoder setting, unused by a decoder-only model": ("is_decoder", "add_cross_attention",
                                                                   "cross_attention_hidden_size",
                                                                   "tie_encoder_decoder", "pruned_heads"),
        "tensor-parallel split of the pretraining run; no effect on the architecture": ("pretraining_tp",),
        "quantized storage of the released weights; the spec describes the model in full precision":
            ("quantization_config",),
    }.items()
    for key in keys
) + (Fixed("is_encoder_decoder", (False, None), "an encoder-decoder config is not this decoder-only model_type"),)

# Keys of a nested sub-config (DBRX's attn_config / ffn_config) that PreTrainedConfig writes.
SUBCONFIG_COMMON = ("_name_or_path", "architectures", "attn_pdrop", "chunk_size_feed_forward", "dtype", "torch_dtype",
                    "id2label", "is_encoder_decoder", "label2id", "model_type", "output_attentions",
                    "output_hidden_states", "problem_type", "return_dict", "transformers_version", "use_bfloat16",
                    "tf_legacy_loss", "torchscript", "pruned_heads", "tie_word_embeddings", "_commit_hash")


# --------------------------------------------------------------------------- helpers


def _num(value: Any) -> Any:
    """JSON numbers as Python numbers; integral floats become ints in YAML-friendly form."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def selector_from_indices(indices: list[int], n: int, *, allow_start: bool = True) -> dict | None:
    """The simplest LayerSelector mapping that selects exactly `indices` of n layers (None: every layer)."""
    want = sorted(set(indices))
    if want == list(range(n)):
        return None
    starts = (0, want[0]) if (allow_start and want) else (0,)
    for every in range(1, n + 1):
        for offset in range(every):
            for start in starts:
                if [i for i in range(n) if i >= start and i % every == offset] == want:
                    out = {key: value for key, value, default in
                           (("every", every, 1), ("offset", offset, 0), ("start", start, 0)) if value != default}
                    return out
    return {"pattern": "".join("M" if i in want else "D" for i in range(n))}


def indices_of(selector: Any, n: int) -> list[int]:
    """Indices a LayerSelector (model or mapping; None = all layers) selects among n layers."""
    from moezoo.spec.schema import LayerSelector

    if selector is None:
        return list(range(n))
    if isinstance(selector, dict):
        selector = LayerSelector(**selector)
    return selector.indices(n)


def _activation_load(value: Any, ctx: ImportCtx) -> Any:
    mapping = {"silu": "swiglu", "swish": "swiglu", "gelu": "geglu", "relu": "reglu"}
    if value not in mapping:
        ctx.error(f"key 'hidden_act' is {value!r}: only silu, gelu and relu gates can be represented")
        return _MISSING
    return mapping[value]


def _activation_dump(value: Any) -> Any:
    return {"swiglu": "silu", "geglu": "gelu", "reglu": "relu"}.get(value, value)


def _activation(default: str = "silu") -> Field:
    return Field("hidden_act", "ffn.activation", default, load=_activation_load, dump=_activation_dump)


# --------------------------------------------------------------------------- rope


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 0.1 * mscale * math.log(scale) + 1.0 if scale > 1 else 1.0


ROPE_INNER = {
    "default": {"rope_type", "type", "rope_theta"},
    "linear": {"rope_type", "type", "rope_theta", "factor"},
    "llama3": {"rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
               "original_max_position_embeddings"},
    "yarn": {"rope_type", "type", "rope_theta", "factor", "original_max_position_embeddings", "beta_fast",
             "beta_slow", "mscale", "mscale_all_dim", "truncate", "attention_factor"},
}


def parse_rope(ctx: ImportCtx, *, default_theta: float, default_params: dict | None = None,
               theta_key: str = "rope_theta") -> dict:
    """rope_theta / rope_scaling (transformers 4.x) or rope_parameters (5.x) -> a `position` mapping."""
    legacy = ctx.get("rope_scaling", None)
    modern = ctx.get("rope_parameters", None)
    if legacy and modern and legacy != modern:
        ctx.warn("both rope_scaling and rope_parameters are set and differ; using rope_parameters")
    params = dict(modern or legacy or default_params or {})
    theta = params.get("rope_theta")
    if theta is None:
        theta = ctx.get(theta_key, default_theta)
    elif ctx.has(theta_key) and ctx.raw(theta_key) != theta:
        ctx.get(theta_key, None)
        ctx.warn(f"'{theta_key}' {ctx.raw(theta_key)} differs from rope_parameters.rope_theta {theta}; "
                 "transformers uses the latter")
    ctx.seen.add(theta_key)
    rope_type = params.get("rope_type", params.get("type", "default"))
    position: dict[str, Any] = {"kind": "rope", "theta": _num(theta)}
    if rope_type not in ROPE_INNER:
        ctx.error(f"rope type {rope_type!r} cannot be represented (moezoo knows default, linear, llama3, yarn)")
        return position
    for key in sorted(set(params) - ROPE_INNER[rope_type]):
        if key == "partial_rotary_factor":
            if params[key] not in (1, 1.0, None):
                ctx.error("partial_rotary_factor != 1 is not used by this model_type in transformers")
            continue
        ctx.warn(f"ignored key 'rope_parameters.{key}' (not used by rope type {rope_type})")
    if rope_type in ("linear", "llama3") and not params.get("factor"):
        ctx.error(f"rope type {rope_type} needs a factor")
        return position
    max_pos = ctx.raw("max_position_embeddings")
    if rope_type == "linear":
        position["scaling"] = {"kind": "linear", "factor": _num(params["factor"])}
    elif rope_type == "llama3":
        position["scaling"] = {
            "kind": "llama3", "factor": _num(params["factor"]),
            "low_freq_factor": _num(params.get("low_freq_factor", 1.0)),
            "high_freq_factor": _num(params.get("high_freq_factor", 4.0)),
            "original_max_seq_len": params.get("original_max_position_embeddings", max_pos),
        }
    elif rope_type == "yarn":
        original = params.get("original_max_position_embeddings") or max_pos
        factor = params.get("factor")
        if factor is None:  # transformers: the ratio of the context lengths
            factor = (max_pos or original) / original
        mscale, all_dim = params.get("mscale"), params.get("mscale_all_dim")
        scaling = {"kind": "yarn", "factor": _num(factor), "original_max_seq_len": original,
                   "beta_fast": _num(params.get("beta_fast") or 32), "beta_slow": _num(params.get("beta_slow") or 1)}
        if mscale and all_dim:
            scaling["mscale"], scaling["mscale_all_dim"] = _num(mscale), _num(all_dim)
        elif all_dim:
            ctx.error("rope mscale_all_dim without mscale: transformers then scales cos/sin by "
                      "0.1*ln(factor)+1 while MLA uses mscale_all_dim; cannot be represented")
        elif mscale and mscale != 1:
            ctx.warn(f"rope mscale {mscale} without mscale_all_dim is ignored by transformers (cos/sin are scaled by "
                     "0.1*ln(factor)+1); the spec follows transformers")
        if params.get("truncate", True) is False:
            scaling["truncate"] = False
        expected = _yarn_mscale(factor, scaling.get("mscale", 1.0)) / _yarn_mscale(factor, scaling.get("mscale_all_dim", 0.0))
        given = params.get("attention_factor")
        if given is not None and not math.isclose(given, expected, rel_tol=1e-9):
            ctx.error(f"rope attention_factor {given} differs from YaRN's {expected:.6g} for these parameters; "
                      "cannot be represented")
        position["scaling"] = scaling
    return position


def dump_rope(spec: Any) -> dict:
    pos = spec_get(spec, "position")
    out: dict[str, Any] = {"rope_type": "default", "rope_theta": float(spec_get(pos, "theta"))}
    sc = spec_get(pos, "scaling")
    if sc is None:
        return out
    kind = spec_get(sc, "kind")
    out["rope_type"] = kind
    out["factor"] = float(spec_get(sc, "factor"))
    if kind == "llama3":
        out.update(low_freq_factor=float(spec_get(sc, "low_freq_factor")),
                   high_freq_factor=float(spec_get(sc, "high_freq_factor")),
                   original_max_position_embeddings=spec_get(sc, "original_max_seq_len"))
    elif kind == "yarn":
        out.update(original_max_position_embeddings=spec_get(sc, "original_max_seq_len"),
                   beta_fast=float(spec_get(sc, "beta_fast")), beta_slow=float(spec_get(sc, "beta_slow")))
        if spec_get(sc, "mscale_all_dim"):
            out.update(mscale=float(spec_get(sc, "mscale")), mscale_all_dim=float(spec_get(sc, "mscale_all_dim")))
        if not spec_get(sc, "truncate"):
            out["truncate"] = False
    return out


def rope_rule(default_theta: float, default_params: dict | None = None) -> Rule:
    def load(ctx: ImportCtx) -> None:
        position = parse_rope(ctx, default_theta=default_theta, default_params=default_params)
        ctx.set("position", position, *(k for k in ("rope_theta", "rope_scaling", "rope_parameters") if ctx.has(k)))
        if ctx.has("partial_rotary_factor") and ctx.get("partial_rotary_factor", 1.0) not in (1, 1.0):
            ctx.error("partial_rotary_factor != 1 is not used by this model_type in transformers")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        hf["rope_parameters"] = dump_rope(spec)

    return Rule(("rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor"), load, dump,
                "rope_theta and rope_scaling (4.x) or rope_parameters (5.x) -> position")


# --------------------------------------------------------------------------- attention


def gqa_rule(heads: int, kv_heads: int | None, head_dim: int | None = None, *, write_head_dim: bool = True) -> Rule:
    """num_attention_heads / num_key_value_heads / head_dim -> attention.{kind, num_heads, num_kv_heads, head_dim}."""

    def load(ctx: ImportCtx) -> None:
        h = ctx.get("num_attention_heads", heads)
        kv = ctx.get("num_key_value_heads", kv_heads)
        kv = h if kv is None else kv
        hd = ctx.get("head_dim", head_dim)
        d = ctx.lookup("model_dim")
        keys = ("num_attention_heads", "num_key_value_heads")
        ctx.set("attention.kind", "mha" if kv == h else "gqa", *keys)
        ctx.set("attention.num_heads", h, "num_attention_heads")
        if kv != h:
            ctx.set("attention.num_kv_heads", kv, "num_key_value_heads")
        if hd is not None and (d is None or d % h or hd != d // h):
            ctx.set("attention.head_dim", hd, "head_dim")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        h = spec_get(spec, "attention.num_heads")
        hf["num_attention_heads"] = h
        hf["num_key_value_heads"] = spec_get(spec, "attention.num_kv_heads") or h
        hd = spec_get(spec, "attention.head_dim") or spec_get(spec, "model_dim") // h
        if write_head_dim or hd != spec_get(spec, "model_dim") // h:
            hf["head_dim"] = hd

    return Rule(("num_attention_heads", "num_key_value_heads", "head_dim"), load, dump)


def mla_rule(heads: int, q_lora: int | None, kv_lora: int, nope: int, rope: int, v: int) -> Rule:
    names = {"q_lora_rank": q_lora, "kv_lora_rank": kv_lora, "qk_nope_head_dim": nope, "qk_rope_head_dim": rope,
             "v_head_dim": v}

    def load(ctx: ImportCtx) -> None:
        h = ctx.get("num_attention_heads", heads)
        ctx.set("attention.kind", "mla")
        ctx.set("attention.num_heads", h, "num_attention_heads")
        for key, default in names.items():
            ctx.set(f"attention.{key}", ctx.get(key, default), key)
        kv = ctx.get("num_key_value_heads", None)
        if kv not in (None, h):
            ctx.warn(f"ignored key 'num_key_value_heads' ({kv}: MLA rebuilds one key and value per query head)")
        eps = ctx.lookup("norm.eps")
        if eps is not None and eps != 1e-6:
            ctx.warn(f"rms_norm_eps {eps}: transformers' MLA normalises the q and kv latents with eps 1e-6 whatever "
                     "rms_norm_eps says; moezoo uses norm.eps for every norm")
        for key in ("head_dim", "qk_head_dim"):
            if ctx.has(key):
                ctx.get(key, None)
                ctx.warn(f"ignored key '{key}' (derived by transformers from the MLA head dims)")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        h = spec_get(spec, "attention.num_heads")
        hf["num_attention_heads"] = hf["num_key_value_heads"] = h
        for key in names:
            hf[key] = spec_get(spec, f"attention.{key}")

    return Rule(("num_attention_heads", "num_key_value_heads", "head_dim", "qk_head_dim", *names), load, dump)


def _bias_both(value: Any, ctx: ImportCtx) -> Any:
    return bool(value)


def attention_bias_field(default: bool) -> Field:
    return Field("attention_bias", "attention.qkv_bias", default, load=_bias_both, also=("attention.out_bias",))


# --------------------------------------------------------------------------- sliding windows


def _window(ctx: ImportCtx, size: int, indices: list[int], *keys: str) -> None:
    n = ctx.lookup("num_layers")
    if not indices:
        return
    sel = selector_from_indices(indices, n, allow_start=False)
    window: dict[str, Any] = {"size": size}
    if sel is not None:
        window["layers"] = sel
    ctx.set("attention.sliding_window", window, *keys)


def _dump_window_indices(spec: Any) -> tuple[int | None, list[int]]:
    win = spec_get(spec, "attention.sliding_window")
    if win is None:
        return None, []
    return spec_get(win, "size"), indices_of(spec_get(win, "layers"), spec_get(spec, "num_layers"))


def window_all_rule() -> Rule:
    """Mixtral: `sliding_window` (null or a size) applies to every layer."""

    def load(ctx: ImportCtx) -> None:
        size = ctx.get("sliding_window", None)
        if size:
            _window(ctx, size, list(range(ctx.lookup("num_layers"))), "sliding_window")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        size, _ = _dump_window_indices(spec)
        hf["sliding_window"] = size

    return Rule(("sliding_window",), load, dump)


def _layer_types(ctx: ImportCtx, n: int) -> list[str] | None:
    types = ctx.get("layer_types", None)
    if types is None:
        return None
    if len(types) != n or set(types) - {"sliding_attention", "full_attention"}:
        ctx.error(f"layer_types must list {n} entries of sliding_attention / full_attention")
        return None
    return types


def window_qwen2_rule() -> Rule:
    """Qwen2-MoE: use_sliding_window, sliding_window, max_window_layers, layer_types (5.x)."""

    keys = ("use_sliding_window", "sliding_window", "max_window_layers", "layer_types")

    def load(ctx: ImportCtx) -> None:
        n = ctx.lookup("num_layers")
        use = ctx.get("use_sliding_window", False)
        size = ctx.get("sliding_window", 4096)
        max_window = ctx.get("max_window_layers", 28)
        types = _layer_types(ctx, n)
        if types is None:  # transformers' default: even layers below max_window_layers slide
            types = ["sliding_attention" if (i + 1) % 2 and i < max_window and use else "full_attention"
                     for i in range(n)]
        sliding = [i for i, t in enumerate(types) if t == "sliding_attention"]
        if not use:
            if sliding:
                ctx.warn("layer_types names sliding layers but use_sliding_window is false; no window is used")
            for key in ("sliding_window", "max_window_layers"):
                if ctx.has(key):
                    ctx.warn(f"ignored key '{key}' (unused: use_sliding_window is false)")
            return
        _window(ctx, size, sliding, *keys)

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        size, idx = _dump_window_indices(spec)
        n = spec_get(spec, "num_layers")
        hf["use_sliding_window"] = size is not None
        if size is not None:
            hf["sliding_window"] = size
            hf["max_window_layers"] = n
        hf["layer_types"] = ["sliding_attention" if i in idx else "full_attention" for i in range(n)]

    return Rule(keys, load, dump)


def window_qwen3_rule() -> Rule:
    """Qwen3-MoE: use_sliding_window turns a window of `sliding_window` on in every layer."""

    def load(ctx: ImportCtx) -> None:
        use = ctx.get("use_sliding_window", False)
        size = ctx.get("sliding_window", 4096)
        if use and size:
            _window(ctx, size, list(range(ctx.lookup("num_layers"))), "use_sliding_window", "sliding_window")
        elif ctx.has("sliding_window") and size:
            ctx.warn("ignored key 'sliding_window' (unused: use_sliding_window is false)")
        if ctx.has("max_window_layers"):
            ctx.get("max_window_layers", None)
            ctx.warn("ignored key 'max_window_layers' (not used by transformers' qwen3_moe)")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        size, _ = _dump_window_indices(spec)
        hf["use_sliding_window"] = size is not None
        hf["sliding_window"] = size

    return Rule(("use_sliding_window", "sliding_window", "max_window_layers"), load, dump)


def window_gpt_oss_rule() -> Rule:
    """gpt-oss: layer_types (default: even layers slide) with a window of sliding_window (default 128)."""

    def load(ctx: ImportCtx) -> None:
        n = ctx.lookup("num_layers")
        size = ctx.get("sliding_window", 128)
        types = _layer_types(ctx, n)
        if types is None:
            types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
        sliding = [i for i, t in enumerate(types) if t == "sliding_attention"]
        if sliding and not size:
            ctx.error("layer_types names sliding layers but sliding_window is null")
            return
        _window(ctx, size, sliding, "sliding_window", "layer_types")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        size, idx = _dump_window_indices(spec)
        n = spec_get(spec, "num_layers")
        hf["sliding_window"] = size
        hf["layer_types"] = ["sliding_attention" if i in idx else "full_attention" for i in range(n)]

    return Rule(("sliding_window", "layer_types"), load, dump)


# --------------------------------------------------------------------------- which layers are MoE


def moe_layers_qwen_rule() -> Rule:
    """Qwen-MoE: layer i is MoE when i not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0."""

    def load(ctx: ImportCtx) -> None:
        n = ctx.lookup("num_layers")
        step = ctx.get("decoder_sparse_step", 1, aliases=("expert_interval",))
        only = ctx.get("mlp_only_layers", None) or []
        if not step or step < 1:
            ctx.error(f"decoder_sparse_step {step} makes no layer MoE")
            return
        idx = [i for i in range(n) if i not in only and (i + 1) % step == 0]
        if not idx:
            ctx.error("decoder_sparse_step / mlp_only_layers select no MoE layer")
            return
        sel = selector_from_indices(idx, n)
        if sel is not None:
            ctx.set("moe.layers", sel, "decoder_sparse_step", "mlp_only_layers")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        n = spec_get(spec, "num_layers")
        idx = indices_of(spec_get(spec, "moe.layers"), n)
        for step in range(1, n + 1):
            if [i for i in range(n) if (i + 1) % step == 0] == idx:
                hf["decoder_sparse_step"], hf["mlp_only_layers"] = step, []
                return
        hf["decoder_sparse_step"], hf["mlp_only_layers"] = 1, [i for i in range(n) if i not in idx]

    return Rule(("decoder_sparse_step", "expert_interval", "mlp_only_layers"), load, dump)


def moe_layers_deepseek_rule(first_k_default: int) -> Rule:
    """DeepSeek: layer i is MoE when i >= first_k_dense_replace (and i % moe_layer_freq == 0 in DeepSeek's code)."""

    def load(ctx: ImportCtx) -> None:
        k = ctx.get("first_k_dense_replace", first_k_default) or 0
        freq = ctx.get("moe_layer_freq", 1) or 1
        if freq != 1:
            ctx.warn(f"moe_layer_freq {freq}: DeepSeek's code makes only every {freq}th layer MoE, transformers "
                     "ignores the key (every layer from first_k_dense_replace on); the spec follows DeepSeek")
        sel = {}
        if k:
            sel["start"] = k
        if freq != 1:
            sel["every"] = freq
        if sel:
            ctx.set("moe.layers", sel, "first_k_dense_replace", *(("moe_layer_freq",) if freq != 1 else ()))

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        n = spec_get(spec, "num_layers")
        idx = indices_of(spec_get(spec, "moe.layers"), n)
        first = idx[0] if idx else n
        for freq in range(1, n + 1):
            if [i for i in range(n) if i >= first and i % freq == 0] == idx:
                break
        else:
            freq = 1
        hf["first_k_dense_replace"] = first
        hf["moe_layer_freq"] = freq
        if freq != 1:
            notes.append(f"moe_layer_freq {freq} is DeepSeek's; transformers ignores it")

    return Rule(("first_k_dense_replace", "moe_layer_freq"), load, dump)


# --------------------------------------------------------------------------- routers and experts


def _jitter_load(value: Any, ctx: ImportCtx) -> Any:
    if not value:
        return _MISSING
    ctx.warn(f"router jitter {value}: transformers multiplies the whole MoE input by the noise (the experts see it "
             "too), moezoo only the router input; training-time only")
    return {"kind": "jitter", "eps": _num(value)}


def _jitter_dump_zero(value: Any) -> Any:
    return float(spec_get(value, "eps")) if value and spec_get(value, "kind") == "jitter" else 0.0


def _jitter_dump_none(value: Any) -> Any:
    return float(spec_get(value, "eps")) if value and spec_get(value, "kind") == "jitter" else None


def qwen_shared_rule(default: int) -> Rule:
    def load(ctx: ImportCtx) -> None:
        width = ctx.get("shared_expert_intermediate_size", default)
        if not width:
            ctx.error("shared_expert_intermediate_size 0: transformers still builds the shared expert's gate; "
                      "cannot be represented")
            return
        key = "shared_expert_intermediate_size"
        ctx.set("moe.experts.num_shared", 1, key)
        ctx.set("moe.experts.shared_hidden_dim", width, key)
        ctx.set("moe.experts.shared_gate", True, key)

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        n = spec_get(spec, "moe.experts.num_shared") or 0
        width = spec_get(spec, "moe.experts.shared_hidden_dim") or spec_get(spec, "moe.experts.hidden_dim")
        hf["shared_expert_intermediate_size"] = n * width

    return Rule(("shared_expert_intermediate_size",), load, dump)


def _renorm_dbrx_load(value: Any, ctx: ImportCtx) -> Any:
    if value is None:
        return False
    if value == 1:
        return True
    ctx.error(f"key 'ffn_config.moe_normalize_expert_weights' is {value}: only 1 (L1, divide by the sum) or null "
              "can be represented")
    return _MISSING


def groups_v2_rule() -> Rule:
    """DeepSeek-V2: topk_method greedy (no groups) or group_limited_greedy (best expert per group)."""

    def load(ctx: ImportCtx) -> None:
        method = ctx.get("topk_method", "greedy")
        n_group = ctx.get("n_group", None)
        topk_group = ctx.get("topk_group", None)
        if method == "group_limited_greedy":
            if not n_group or not topk_group:
                ctx.error("topk_method group_limited_greedy needs n_group and topk_group")
                return
            ctx.set("moe.router.groups", {"num_groups": n_group, "top_groups": topk_group, "group_score": "max"},
                    "topk_method", "n_group", "topk_group")
        elif method == "greedy":
            if (n_group or 1) > 1:
                ctx.warn(f"ignored keys 'n_group' ({n_group}) and 'topk_group' ({topk_group}): "
                         "topk_method greedy does not limit groups")
        else:
            ctx.error(f"topk_method {method!r}: transformers' deepseek_v2 knows greedy and group_limited_greedy")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        groups = spec_get(spec, "moe.router.groups")
        if groups is None:
            hf["topk_method"], hf["n_group"], hf["topk_group"] = "greedy", None, None
        else:
            hf["topk_method"] = "group_limited_greedy"
            hf["n_group"], hf["topk_group"] = spec_get(groups, "num_groups"), spec_get(groups, "top_groups")

    return Rule(("topk_method", "n_group", "topk_group"), load, dump)


def groups_v3_rule() -> Rule:
    """DeepSeek-V3: groups scored by their top-2 sum (n_group / topk_group), selection by score + bias."""

    def load(ctx: ImportCtx) -> None:
        method = ctx.get("topk_method", "noaux_tc")
        if method != "noaux_tc":
            ctx.warn(f"topk_method {method!r}: transformers' deepseek_v3 always routes with noaux_tc "
                     "(score + e_score_correction_bias, group top-2 sums); the spec follows transformers")
        n_group = ctx.get("n_group", 8) or 1
        topk_group = ctx.get("topk_group", 4) or 1
        if n_group > 1:
            ctx.set("moe.router.groups", {"num_groups": n_group, "top_groups": topk_group, "group_score": "top2_sum"},
                    "n_group", "topk_group")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        groups = spec_get(spec, "moe.router.groups")
        hf["topk_method"] = "noaux_tc"
        hf["n_group"] = spec_get(groups, "num_groups") if groups is not None else 1
        hf["topk_group"] = spec_get(groups, "top_groups") if groups is not None else 1

    return Rule(("topk_method", "n_group", "topk_group"), load, dump)


def scoring_rule(expected: str, model_type: str) -> Rule:
    """DeepSeek's `scoring_func` (a key of DeepSeek's own configuration code, not of transformers')."""

    def load(ctx: ImportCtx) -> None:
        value = ctx.get("scoring_func", expected)
        if value != expected:
            ctx.error(f"key 'scoring_func' is {value!r}: transformers' {model_type} always scores with {expected}")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        hf["scoring_func"] = spec_get(spec, "moe.router.scoring")

    return Rule(("scoring_func",), load, dump)


def deepseek_aux_rule() -> Rule:
    """DeepSeek's own config keys aux_loss_alpha / seq_aux (transformers computes no DeepSeek balance loss)."""

    def load(ctx: ImportCtx) -> None:
        alpha = ctx.get("aux_loss_alpha", None)
        seq = ctx.get("seq_aux", None)
        if not alpha:
            return
        if seq:
            ctx.set("moe.balance.sequence_aux_loss_weight", _num(alpha), "aux_loss_alpha", "seq_aux")
        else:
            ctx.set("moe.balance.aux_loss_weight", _num(alpha), "aux_loss_alpha", "seq_aux")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        seq = spec_get(spec, "moe.balance.sequence_aux_loss_weight")
        aux = spec_get(spec, "moe.balance.aux_loss_weight")
        if seq:
            hf["aux_loss_alpha"], hf["seq_aux"] = seq, True
        elif aux:
            hf["aux_loss_alpha"], hf["seq_aux"] = aux, False

    return Rule(("aux_loss_alpha", "seq_aux"), load, dump)


def mtp_rule() -> Rule:
    def load(ctx: ImportCtx) -> None:
        depth = ctx.get("num_nextn_predict_layers", 1, aliases=("num_mtp_layers",))
        if depth:
            ctx.set("mtp", {"depth": depth, "loss_weight": 0.3}, "num_nextn_predict_layers")
            ctx.warn("mtp.loss_weight is not in config.json; using 0.3 (DeepSeek-V3 report, first 10T tokens). "
                     "transformers builds no MTP module (MODELS.md section 4.4); Model.from_hf maps "
                     "model.layers.<num_layers + k> when the checkpoint has them")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        hf["num_nextn_predict_layers"] = spec_get(spec, "mtp.depth") or 0

    return Rule(("num_nextn_predict_layers", "num_mtp_layers"), load, dump)


def _norm_topk_v2(value: Any, ctx: ImportCtx) -> Any:
    if value:
        ctx.warn("norm_topk_prob true: DeepSeek's code renormalises the top-k weights, transformers' deepseek_v2 "
                 "does not; the spec follows the config (DeepSeek)")
    return bool(value)


# --------------------------------------------------------------------------- DBRX


def dbrx_rope_rule() -> Rule:
    """DBRX keeps theta in attn_config.rope_theta; transformers 5.23's rotary table reads rope_parameters
    (MODELS.md section 4.1). The spec takes DBRX's value; export-hf writes both so transformers agrees."""

    def load(ctx: ImportCtx) -> None:
        nested = ctx.get("attn_config.rope_theta", None)
        position = parse_rope(ctx, default_theta=10000.0)  # what transformers' rotary table uses
        if nested is None:
            ctx.warn("attn_config.rope_theta is missing: transformers' DbrxAttention cannot be built without it")
        elif nested != position["theta"]:
            ctx.warn(f"attn_config.rope_theta {_num(nested)} is DBRX's rope base, but transformers 5.23 builds its "
                     f"rotary table from rope_parameters (theta {position['theta']} here; MODELS.md section 4.1). "
                     "The spec keeps attn_config.rope_theta; export-hf writes both")
        if nested is not None:
            position["theta"] = _num(nested)
        ctx.set("position", position, "attn_config.rope_theta")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        rope = dump_rope(spec)
        set_hf(hf, "attn_config.rope_theta", rope["rope_theta"])
        hf["rope_parameters"] = rope

    return Rule(("attn_config.rope_theta", "rope_parameters", "rope_scaling", "rope_theta"), load, dump)


def dbrx_attention_rule(heads: int, kv_default: int) -> Rule:
    def load(ctx: ImportCtx) -> None:
        h = ctx.get("n_heads", heads)
        kv = ctx.get("attn_config.kv_n_heads", kv_default)
        ctx.set("attention.kind", "mha" if kv == h else "gqa", "n_heads", "attn_config.kv_n_heads")
        ctx.set("attention.num_heads", h, "n_heads")
        if kv != h:
            ctx.set("attention.num_kv_heads", kv, "attn_config.kv_n_heads")
        if ctx.has("num_key_value_heads"):
            ctx.get("num_key_value_heads", None)
            ctx.warn("ignored key 'num_key_value_heads' (derived by transformers from attn_config.kv_n_heads)")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        h = spec_get(spec, "attention.num_heads")
        hf["n_heads"] = h
        set_hf(hf, "attn_config.kv_n_heads", spec_get(spec, "attention.num_kv_heads") or h)

    return Rule(("n_heads", "attn_config.kv_n_heads", "num_key_value_heads"), load, dump)


def dbrx_aux_rule() -> Rule:
    def load(ctx: ImportCtx) -> None:
        weight = ctx.get("ffn_config.moe_loss_weight", 0.01)
        ctx.set("moe.balance.aux_loss_weight", _num(weight), "ffn_config.moe_loss_weight")
        top = ctx.get("router_aux_loss_coef", None)
        if top is not None:
            extra = "" if top == weight else f"; it differs ({top} vs {weight})"
            ctx.warn(f"ignored key 'router_aux_loss_coef' (transformers' DBRX reads ffn_config.moe_loss_weight{extra})")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        weight = spec_get(spec, "moe.balance.aux_loss_weight")
        set_hf(hf, "ffn_config.moe_loss_weight", weight)
        hf["router_aux_loss_coef"] = weight

    return Rule(("ffn_config.moe_loss_weight", "router_aux_loss_coef"), load, dump)


def _act_dbrx_load(value: Any, ctx: ImportCtx) -> Any:
    name = (value or {}).get("name", "silu") if isinstance(value, dict) else value
    extra = set(value) - {"name"} if isinstance(value, dict) else set()
    if extra:
        ctx.warn(f"ignored keys in ffn_config.ffn_act_fn: {sorted(extra)}")
    return _activation_load(name, ctx)


# --------------------------------------------------------------------------- the tables

_LLAMA_NORM = (Const("norm.kind", "rmsnorm"), Const("position.kind", "rope"))
_ROUTER = (Const("moe.router.kind", "token_choice"),)
_POOLED = (Const("moe.balance.layer_reduction", "hf_pooled", "transformers pools the aux loss over all MoE layers"),)


def _skeleton(vocab: int, hidden: int, layers: int, max_pos: int, eps: float) -> tuple[Entry, ...]:
    return (
        Field("vocab_size", "vocab_size", vocab),
        Field("hidden_size", "model_dim", hidden),
        Field("num_hidden_layers", "num_layers", layers),
        Field("max_position_embeddings", "max_seq_len", max_pos),
        Field("rms_norm_eps", "norm.eps", eps),
        Field("tie_word_embeddings", "embedding.tied", False),
    )


MIXTRAL = Table(
    "mixtral", "MixtralForCausalLM", "mixtral",
    _skeleton(32000, 4096, 32, 131072, 1e-5) + (
        gqa_rule(32, 8),
        rope_rule(1e6),
        window_all_rule(),
        _activation(),
        Field("intermediate_size", "moe.experts.hidden_dim", 14336, also=("ffn.hidden_dim",)),
        Field("num_local_experts", "moe.experts.num_routed", 8, aliases=("num_experts",)),
        Field("num_experts_per_tok", "moe.router.top_k", 2),
        Field("router_aux_loss_coef", "moe.balance.aux_loss_weight", 0.001),
        Field("router_jitter_noise", "moe.router.noise", 0.0, load=_jitter_load, dump=_jitter_dump_zero),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER, *_POOLED,
        Const("moe.router.scoring", "softmax"),
        Const("moe.router.renormalize", True, "softmax, top-k, divide by the sum (= softmax over the k logits)"),
    ),
    doc="Mixtral: every layer MoE, softmax -> top-k -> renormalise.",
)

QWEN2_MOE = Table(
    "qwen2_moe", "Qwen2MoeForCausalLM", "qwen_moe",
    _skeleton(151936, 2048, 24, 32768, 1e-6) + (
        gqa_rule(16, 16, write_head_dim=False),
        Field("qkv_bias", "attention.qkv_bias", True),
        rope_rule(10000.0),
        window_qwen2_rule(),
        _activation(),
        Field("intermediate_size", "ffn.hidden_dim", 5632),  # dense layers only: unused when every layer is MoE
        Field("moe_intermediate_size", "moe.experts.hidden_dim", 1408),
        qwen_shared_rule(5632),
        Field("num_experts", "moe.experts.num_routed", 60, aliases=("num_local_experts",)),
        Field("num_experts_per_tok", "moe.router.top_k", 4),
        Field("norm_topk_prob", "moe.router.renormalize", False),
        moe_layers_qwen_rule(),
        Field("router_aux_loss_coef", "moe.balance.aux_loss_weight", 0.001),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER, *_POOLED,
        Const("moe.router.scoring", "softmax"),
    ),
    doc="Qwen1.5/Qwen2-MoE: sigmoid-gated shared expert, q/k/v biases; intermediate_size only sizes dense layers.",
)

QWEN3_MOE = Table(
    "qwen3_moe", "Qwen3MoeForCausalLM", "qwen3_moe",
    _skeleton(151936, 2048, 24, 32768, 1e-6) + (
        gqa_rule(32, 4),
        attention_bias_field(False),
        Const("attention.qk_norm", "per_head"),
        rope_rule(10000.0),
        window_qwen3_rule(),
        _activation(),
        Field("intermediate_size", "ffn.hidden_dim", 6144),
        Field("moe_intermediate_size", "moe.experts.hidden_dim", 768),
        Field("num_experts", "moe.experts.num_routed", 128, aliases=("num_local_experts",)),
        Field("num_experts_per_tok", "moe.router.top_k", 8),
        Field("norm_topk_prob", "moe.router.renormalize", False),
        moe_layers_qwen_rule(),
        Field("router_aux_loss_coef", "moe.balance.aux_loss_weight", 0.001),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER, *_POOLED,
        Const("moe.router.scoring", "softmax"),
    ),
    doc="Qwen3-MoE: per-head QK-norm, no shared expert.",
)

OLMOE = Table(
    "olmoe", "OlmoeForCausalLM", "olmoe",
    _skeleton(50304, 2048, 16, 4096, 1e-5) + (
        gqa_rule(16, None, write_head_dim=False),
        attention_bias_field(False),
        Field("clip_qkv", "attention.clip_qkv", None, load=lambda v, ctx: _num(v) if v else _MISSING),
        Const("attention.qk_norm", "full"),
        rope_rule(10000.0),
        _activation(),
        Field("intermediate_size", "moe.experts.hidden_dim", 2048, also=("ffn.hidden_dim",)),
        Field("num_experts", "moe.experts.num_routed", 64, aliases=("num_local_experts",)),
        Field("num_experts_per_tok", "moe.router.top_k", 8),
        Field("norm_topk_prob", "moe.router.renormalize", False),
        Field("router_aux_loss_coef", "moe.balance.aux_loss_weight", 0.01),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER, *_POOLED,
        Const("moe.router.scoring", "softmax"),
    ),
    doc="OLMoE: QK-norm over the whole q and k projections (then clip_qkv, as transformers orders them).",
)

GPT_OSS = Table(
    "gpt_oss", "GptOssForCausalLM", "gpt_oss",
    _skeleton(201088, 2880, 36, 131072, 1e-5) + (
        gqa_rule(64, 8, 64),
        attention_bias_field(True),
        Const("attention.sinks", True),
        rope_rule(150000.0, {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                             "truncate": False, "original_max_position_embeddings": 4096}),
        window_gpt_oss_rule(),
        Field("intermediate_size", "moe.experts.hidden_dim", 2880, also=("ffn.hidden_dim",)),
        Field("num_local_experts", "moe.experts.num_routed", 128, aliases=("num_experts",)),
        Field("num_experts_per_tok", "moe.router.top_k", 4, aliases=("experts_per_token",)),
        Field("swiglu_limit", "ffn.clamp_limit", 7.0, load=lambda v, ctx: _num(v)),
        Field("swiglu_alpha", "ffn.glu_alpha", 1.702),
        Field("router_aux_loss_coef", "moe.balance.aux_loss_weight", 0.001),
        Ignore("hidden_act", "unused: gpt-oss experts apply the clamped SwiGLU"),
        Ignore("initial_context_length", "superseded by rope original_max_position_embeddings"),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER, *_POOLED,
        Const("ffn.activation", "clamped_swiglu"),
        Const("ffn.bias", True),
        Const("moe.experts.bias", True),
        Const("moe.router.bias", True),
        Const("moe.router.scoring", "softmax"),
        Const("moe.router.softmax_after_topk", True, "top-k of the biased logits, softmax over the k chosen"),
    ),
    doc="gpt-oss: sinks, alternating 128-token windows, clamped SwiGLU experts with biases, biased router.",
)


def _deepseek_common(first_k: int, shared: int, top_k: Any) -> tuple[Entry, ...]:
    return (
        Fixed("attention_bias", (False, None), "MLA projections with biases " + FIXED_EXPLAIN),
        Fixed("mlp_bias", (False, None), "FFN biases in DeepSeek " + FIXED_EXPLAIN),
        _activation(),
        Field("n_shared_experts", "moe.experts.num_shared", shared, load=lambda v, ctx: v or 0),
        Field("num_experts_per_tok", "moe.router.top_k", top_k),
        Field("routed_scaling_factor", "moe.router.scaling_factor", 1.0, load=lambda v, ctx: _num(v)),
        moe_layers_deepseek_rule(first_k),
        deepseek_aux_rule(),
        Ignore("ep_size", "expert-parallel degree of the training run"),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER,
        Const("moe.balance.aux_loss_style", "deepseek", "DeepSeekMoE's normalisation of f_i"),
    )


DEEPSEEK_V2 = Table(
    "deepseek_v2", "DeepseekV2ForCausalLM", "deepseek",
    _skeleton(102400, 4096, 32, 2048, 1e-6) + (
        mla_rule(32, 1536, 512, 128, 64, 128),
        rope_rule(10000.0),
        Field("intermediate_size", "ffn.hidden_dim", 11008),
        Field("moe_intermediate_size", "moe.experts.hidden_dim", 1407),
        Field("n_routed_experts", "moe.experts.num_routed", 64, aliases=("num_experts",)),
        Field("norm_topk_prob", "moe.router.renormalize", False, load=_norm_topk_v2),
        groups_v2_rule(),
        scoring_rule("softmax", "deepseek_v2"),
        *_deepseek_common(0, 2, REQUIRED),
        Const("moe.router.scoring", "softmax"),
    ),
    doc="DeepSeek-V2 / V2-Lite: MLA, softmax routing, optional device-limited groups (best expert per group).",
)

DEEPSEEK_V3 = Table(
    "deepseek_v3", "DeepseekV3ForCausalLM", "deepseek",
    _skeleton(129280, 7168, 61, 4096, 1e-6) + (
        mla_rule(128, 1536, 512, 128, 64, 128),
        rope_rule(10000.0),
        Ignore("rope_interleave", "checkpoint layout of the rope dimensions; Model.from_hf reads it from config.json"),
        Field("intermediate_size", "ffn.hidden_dim", 18432),
        Field("moe_intermediate_size", "moe.experts.hidden_dim", 2048),
        Field("n_routed_experts", "moe.experts.num_routed", 256, aliases=("num_local_experts",)),
        Field("norm_topk_prob", "moe.router.renormalize", True, load=lambda v, ctx: bool(v)),
        groups_v3_rule(),
        scoring_rule("sigmoid", "deepseek_v3"),
        mtp_rule(),
        *_deepseek_common(3, 1, 8),
        Const("moe.router.scoring", "sigmoid"),
        Const("moe.balance.aux_free", {"update_rate": 0.001},
              "the e_score_correction_bias buffer; its update speed (gamma) is not in config.json"),
    ),
    doc="DeepSeek-V3: MLA, sigmoid scores with a selection-only bias, groups scored by top-2 sums, MTP.",
)

DEEPSEEK = Table(
    "deepseek", "DeepseekForCausalLM", "deepseek",
    _skeleton(102400, 4096, 30, 2048, 1e-6) + (
        gqa_rule(32, None, write_head_dim=False),
        Fixed("attention_bias", (False, None), "attention biases in DeepSeekMoE " + FIXED_EXPLAIN),
        rope_rule(10000.0),
        _activation(),
        Field("intermediate_size", "ffn.hidden_dim", 11008),
        Field("moe_intermediate_size", "moe.experts.hidden_dim", 1407),
        Field("n_routed_experts", "moe.experts.num_routed", REQUIRED),
        Field("n_shared_experts", "moe.experts.num_shared", None, load=lambda v, ctx: v or 0),
        Field("num_experts_per_tok", "moe.router.top_k", REQUIRED),
        Field("norm_topk_prob", "moe.router.renormalize", False),
        scoring_rule("softmax", "deepseek"),
        moe_layers_deepseek_rule(0),
        deepseek_aux_rule(),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER,
        Const("moe.router.scoring", "softmax"),
        Const("moe.balance.aux_loss_style", "deepseek", "DeepSeekMoE's normalisation of f_i"),
    ),
    custom_code=True,
    doc="DeepSeekMoE 16B (custom code, model_type 'deepseek'): no transformers class, so no Model.from_hf map.",
)

DBRX = Table(
    "dbrx", "DbrxForCausalLM", "dbrx",
    (
        Field("vocab_size", "vocab_size", 32000),
        Field("d_model", "model_dim", 2048, aliases=("hidden_size",)),
        Field("n_layers", "num_layers", 24, aliases=("num_hidden_layers",)),
        Field("max_seq_len", "max_seq_len", 2048, aliases=("max_position_embeddings",)),
        Fixed("tie_word_embeddings", (False, None), "transformers' DBRX refuses tied embeddings", write=False),
        dbrx_attention_rule(16, 1),
        Field("attn_config.clip_qkv", "attention.clip_qkv", None, load=lambda v, ctx: _num(v) if v else _MISSING),
        dbrx_rope_rule(),
        Field("ffn_config.ffn_hidden_size", "moe.experts.hidden_dim", 3584, also=("ffn.hidden_dim",)),
        Field("ffn_config.moe_num_experts", "moe.experts.num_routed", 4),
        Field("ffn_config.moe_top_k", "moe.router.top_k", 1),
        Field("ffn_config.moe_jitter_eps", "moe.router.noise", None, load=_jitter_load, dump=_jitter_dump_none),
        Field("ffn_config.moe_normalize_expert_weights", "moe.router.renormalize", 1.0, load=_renorm_dbrx_load,
              dump=lambda v: 1.0 if v else None),
        Field("ffn_config.ffn_act_fn", "ffn.activation", {"name": "silu"}, load=_act_dbrx_load,
              dump=lambda v: {"name": _activation_dump(v)}),
        dbrx_aux_rule(),
        Ignore("ffn_config.hidden_size", "derived by transformers from d_model"),
        Ignore("resid_pdrop", DROPOUT),
        Ignore("emb_pdrop", DROPOUT),
        Const("norm.kind", "layernorm"),
        Const("norm.eps", 1e-5, "nn.LayerNorm's default: DBRX has no eps key"),
        Const("norm.bias", False),
        Const("position.kind", "rope"),
        *_ROUTER, *_POOLED,
        Const("moe.router.scoring", "softmax"),
    ) + tuple(Ignore(f"{sub}.{key}", "sub-config metadata" if key != "attn_pdrop" else DROPOUT)
              for sub in ("attn_config", "ffn_config") for key in SUBCONFIG_COMMON),
    subconfigs=("attn_config", "ffn_config"),
    doc="DBRX: fused Wqkv with clip_qkv, LayerNorm without bias, theta nested in attn_config.",
)


# --------------------------------------------------------------------------- Switch Transformers (encoder-decoder)


def hf_switch_sparse_layers(n: int, k: int) -> list[int]:
    """The sparse layers transformers 5.23 builds in a stack of n layers with k sparse ones: step = n // k
    (n when k is 0, so layer 1 is still sparse), then layer i is sparse when i % step == 1 or step == 1
    (none when step is 0, i.e. k > n)."""
    step = n // k if k > 0 else n
    if step <= 0:
        return []
    return [i for i in range(n) if step == 1 or i % step == 1]


def switch_layers_rule() -> Rule:
    """Which layers are sparse, per stack, from num_sparse_{encoder,decoder}_layers; one spec rule for both."""
    keys = ("num_sparse_encoder_layers", "num_sparse_decoder_layers")

    def load(ctx: ImportCtx) -> None:
        n_enc, n_dec = ctx.lookup("num_encoder_layers"), ctx.lookup("num_layers")
        if not isinstance(n_enc, int) or not isinstance(n_dec, int):
            return
        k_enc, k_dec = ctx.get(keys[0], 3), ctx.get(keys[1], 3)
        enc, dec = hf_switch_sparse_layers(n_enc, k_enc), hf_switch_sparse_layers(n_dec, k_dec)
        for k, n, stack in ((k_enc, n_enc, "encoder"), (k_dec, n_dec, "decoder")):
            if k == 0 and n > 1:
                ctx.warn(f"num_sparse_{stack}_layers is 0, but transformers still makes {stack} layer 1 sparse "
                         "(its sparse step becomes the layer count); imported as transformers builds it")
            if n // max(k, 1) == 1 and k > 0:
                ctx.warn(f"every {stack} layer is sparse: transformers 5.23 then adds no router losses for the "
                         f"{stack} (it checks sparse_step > 1); moezoo's model computes them")
        if not enc and not dec:
            ctx.error("no sparse layers in either stack: a dense T5 is not a Mixture-of-Experts model")
            return
        (n_long, long), (n_short, short) = sorted(((n_enc, enc), (n_dec, dec)), key=lambda t: -t[0])
        selector = selector_from_indices(long, n_long, allow_start=False)
        if not long or not short or indices_of(selector, n_short) != short or (selector or {}).get("pattern"):
            bug = ("; num_sparse_decoder_layers exceeds num_decoder_layers, so transformers' sparse step is 0 and "
                   "the decoder gets no sparse layer: the known Switch-C-2048 config.json bug "
                   "(specs/switch_c_2048.yaml has the T5X layout, 15 + 15 sparse layers)") if k_dec > n_dec else ""
            ctx.error(f"transformers builds sparse layers {enc} of {n_enc} in the encoder ({keys[0]} {k_enc}) and "
                      f"{dec} of {n_dec} in the decoder ({keys[1]} {k_dec}); a moezoo spec places MoE layers by one "
                      f"rule for both stacks{bug}")
            return
        if selector is not None:
            ctx.set("moe.layers", selector, *keys)

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        layers = spec_get(spec, "moe.layers")
        for key, n in ((keys[0], spec_get(spec, "num_encoder_layers")), (keys[1], spec_get(spec, "num_layers"))):
            want = indices_of(layers, n) if spec_get(spec, "moe") is not None else []
            # the count whose transformers layout is exactly the spec's (else the round trip reports it)
            counts = [len(want)] + [k for k in range(n + 1) if k != len(want)]
            hf[key] = next((k for k in counts if hf_switch_sparse_layers(n, k) == want), len(want))

    return Rule(keys, load, dump, "sparse layers: i % (n // k) == 1 in each stack")


def switch_attention_rule() -> Rule:
    def load(ctx: ImportCtx) -> None:
        heads = ctx.get("num_heads", 12)
        ctx.set("attention", {"kind": "mha", "num_heads": heads, "head_dim": ctx.get("d_kv", 64),
                              "softmax_scale": 1.0}, "num_heads", "d_kv")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        heads = spec_get(spec, "attention.num_heads")
        hf["num_heads"] = heads
        hf["d_kv"] = spec_get(spec, "attention.head_dim") or spec_get(spec, "model_dim") // heads

    return Rule(("num_heads", "d_kv"), load, dump, "T5 attention: no 1/sqrt(d) scaling, no biases")


def switch_embedding_rule() -> Rule:
    def load(ctx: ImportCtx) -> None:
        tied = bool(ctx.get("tie_word_embeddings", True))
        d = ctx.lookup("model_dim")
        if tied:
            ctx.set("embedding", {"tied": True, "logit_multiplier": d ** -0.5}, "tie_word_embeddings", "d_model")
        else:
            ctx.set("embedding.tied", False, "tie_word_embeddings")
            ctx.warn("tie_word_embeddings is false: transformers 5.23 then keeps separate encoder and decoder input "
                     "embeddings (encoder.embed_tokens, decoder.embed_tokens) beside shared.weight; moezoo shares "
                     "one input embedding (the T5X layout), and Model.from_hf checks that they equal shared.weight")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        hf["tie_word_embeddings"] = bool(spec_get(spec, "embedding.tied"))

    return Rule(("tie_word_embeddings",), load, dump, "tied: logits scaled by d_model**-0.5")


def switch_capacity_rule() -> Rule:
    def load(ctx: ImportCtx) -> None:
        value = ctx.get("expert_capacity", 64)
        ctx.set("moe.router.capacity", {"train_factor": 1.25, "eval_factor": 2.0}, "expert_capacity")
        ctx.warn(f"expert_capacity {value}: transformers caps every expert at {value} tokens per sequence, in "
                 "training and evaluation alike; moezoo uses the Switch paper's capacity factor over the batch "
                 "(capacity = factor x tokens / experts) and sets T5X's 1.25 (train) / 2.0 (eval): edit "
                 "moe.router.capacity to change them")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        cap, seq = spec_get(spec, "moe.router.capacity"), spec_get(spec, "max_seq_len")
        experts = spec_get(spec, "moe.experts.num_routed")
        if cap is None:
            hf["expert_capacity"] = seq
            notes.append(f"dropless spec: expert_capacity = max_seq_len = {seq}, so a full sequence never overflows")
        else:
            factor = spec_get(cap, "eval_factor")
            hf["expert_capacity"] = max(spec_get(cap, "min_capacity"), math.ceil(factor * seq / experts))
            notes.append(f"expert_capacity {hf['expert_capacity']} = eval capacity factor {factor} x max_seq_len "
                         f"{seq} / {experts} experts (transformers counts capacity per sequence); the factors "
                         "themselves are kept in the moezoo key")

    return Rule(("expert_capacity",), load, dump, "per-sequence token count vs the paper's capacity factor")


def _switch_act_load(value: Any, ctx: ImportCtx) -> Any:
    mapping = {"relu": "relu", "gelu": "gelu", "silu": "silu", "swish": "silu"}
    if value not in mapping:
        ctx.error(f"key 'dense_act_fn' is {value!r}: transformers' Switch FFN is never gated and moezoo represents "
                  "relu, gelu and silu")
        return _MISSING
    return mapping[value]


SWITCH = Table(
    "switch_transformers", "SwitchTransformersForConditionalGeneration", "switch",
    (
        Const("architecture", "encoder_decoder"),
        Fixed("is_encoder_decoder", (True, None), "Switch Transformers is an encoder-decoder", write=True),
        Field("vocab_size", "vocab_size", 32128),
        Field("d_model", "model_dim", 768, aliases=("hidden_size",)),
        Field("num_layers", "num_encoder_layers", 12, aliases=("num_hidden_layers",)),
        Field("num_decoder_layers", "num_layers", None,
              load=lambda v, ctx: v if v is not None else ctx.lookup("num_encoder_layers")),
        Field("layer_norm_epsilon", "norm.eps", 1e-6),
        switch_embedding_rule(),
        switch_attention_rule(),
        # (a spec without the T5 bias writes the defaults; the round trip then names position.kind)
        Field("relative_attention_num_buckets", "position.num_buckets", 32, dump=lambda v: 32 if v is None else v),
        Field("relative_attention_max_distance", "position.max_distance", 128, dump=lambda v: 128 if v is None else v),
        Field("d_ff", "ffn.hidden_dim", 2048, also=("moe.experts.hidden_dim",)),
        Field("dense_act_fn", "ffn.activation", "relu", load=_switch_act_load, dump=_activation_dump),
        Field("num_experts", "moe.experts.num_routed", 8),
        switch_layers_rule(),
        Field("router_bias", "moe.router.bias", False),
        Field("router_jitter_noise", "moe.router.noise", 0.01, load=_jitter_load, dump=_jitter_dump_zero),
        Field("router_dtype", "moe.router.float32", "float32", load=lambda v, ctx: v == "float32",
              dump=lambda v: "float32" if v else "bfloat16"),
        switch_capacity_rule(),
        Field("router_aux_loss_coef", "moe.balance.aux_loss_weight", 0.001),
        Field("router_z_loss_coef", "moe.balance.z_loss_weight", 0.001),
        Ignore("router_ignore_padding_tokens", "stored but not read by transformers 5.23's router"),
        Ignore("router_type", "not read by transformers 5.23: its Switch router is always top-1"),
        Ignore("num_selected_experts", "not read by transformers 5.23: its Switch router is always top-1"),
        Ignore("batch_prioritized_routing", "not read by transformers 5.23: tokens queue in sequence order"),
        Ignore("is_full_sparse", "not read by transformers 5.23"),
        Ignore("encoder_sparse_step", "derived by transformers from num_layers and num_sparse_encoder_layers"),
        Ignore("decoder_sparse_step", "derived by transformers from num_decoder_layers and num_sparse_decoder_layers"),
        Ignore("feed_forward_proj", "T5's FFN key; transformers' Switch reads dense_act_fn"),
        Ignore("is_gated_act", "T5's FFN key; transformers' Switch FFN is never gated"),
        Ignore("add_router_probs", "output switch"),
        Ignore("initializer_factor", "initialisation only"),
        Ignore("n_positions", "T5 metadata; the relative position bias has no length limit"),
        Ignore("dropout_rate", DROPOUT),
        Ignore("is_decoder", "set by transformers on each stack's copy of the config"),
        Ignore("add_cross_attention", "unused: the decoder blocks always have cross-attention"),
        Const("max_seq_len", 512, "T5's pre-training input length: config.json has no length key"),
        Const("norm.kind", "rmsnorm"),
        Const("position.kind", "t5_relative"),
        Const("moe.router.kind", "token_choice"),
        Const("moe.router.top_k", 1),
        Const("moe.router.scoring", "softmax"),
        Const("moe.balance.layer_reduction", "hf_pooled",
              "per stack: the z-loss averaged over the stack's MoE layers, f_i and P_i per sequence pooled over them"),
    ),
    encoder_decoder=True,
    non_architecture=(("max_seq_len",), ("moe", "router", "capacity")),
    doc="Switch Transformers: T5 v1.0 encoder-decoder, top-1 routing, odd layers sparse (i % step == 1).",
)


# --------------------------------------------------------------------------- Llama 4 (text model)


def _llama4_rope_flags(ctx: ImportCtx, n: int) -> list[bool] | None:
    """Which layers use rope: no_rope_layers (1 = the layer USES rope, despite the name) or, when that is null or
    empty, transformers' default: a NoPE layer every no_rope_layer_interval layers ((i + 1) % interval == 0)."""
    flags = ctx.get("no_rope_layers", None)
    interval = ctx.get("no_rope_layer_interval", 4)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        # transformers computes the default list in every __post_init__, even when no_rope_layers is given
        ctx.error(f"no_rope_layer_interval {interval!r}: transformers computes (i + 1) % interval for each layer "
                  "(it needs an integer >= 1)")
        return None
    default = [(i + 1) % interval != 0 for i in range(n)]
    if not flags:  # transformers: `no_rope_layers if no_rope_layers else default`, so [] is the default too
        return default
    if not isinstance(flags, list) or any(not isinstance(f, (int, bool)) for f in flags):
        ctx.error("no_rope_layers must be a list of 0 / 1 per layer (1: the layer uses rope)")
        return None
    if len(flags) < n:
        ctx.error(f"no_rope_layers lists {len(flags)} layers; transformers reads an entry for each of the {n} layers")
        return None
    if len(flags) > n:
        ctx.warn(f"no_rope_layers lists {len(flags)} entries for {n} layers; transformers ignores the last "
                 f"{len(flags) - n}")
    out = [bool(f) for f in flags[:n]]
    if ctx.has("no_rope_layer_interval") and default != out:
        ctx.warn(f"ignored key 'no_rope_layer_interval' ({interval}: no_rope_layers is set, and transformers reads it "
                 "first)")
    return out


def llama4_nope_rule() -> Rule:
    keys = ("no_rope_layers", "no_rope_layer_interval")

    def load(ctx: ImportCtx) -> None:
        n = ctx.lookup("num_layers")
        flags = _llama4_rope_flags(ctx, n)
        if flags is None or all(flags):
            return
        nope = [i for i in range(n) if not flags[i]]
        ctx.set("position.nope_layers", selector_from_indices(nope, n) or {"every": 1}, *keys)

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        n = spec_get(spec, "num_layers")
        sel = spec_get(spec, "position.nope_layers")
        nope = indices_of(sel, n) if sel is not None else []
        flags = [0 if i in nope else 1 for i in range(n)]
        hf["no_rope_layers"] = flags
        # the interval whose default is this list, if one is (transformers writes both keys)
        interval = next((k for k in range(1, n + 2) if [int((i + 1) % k != 0) for i in range(n)] == flags), None)
        if interval is not None:
            hf["no_rope_layer_interval"] = interval

    return Rule(keys, load, dump, "no_rope_layers: 1 = rope, 0 = NoPE (default: every 4th layer is NoPE)")


def llama4_chunk_rule() -> Rule:
    """layer_types (default: chunked_attention on the rope layers, full_attention on the NoPE layers) with chunks of
    attention_chunk_size tokens."""
    keys = ("attention_chunk_size", "layer_types")

    def load(ctx: ImportCtx) -> None:
        n = ctx.lookup("num_layers")
        size = ctx.get("attention_chunk_size", 8192)
        types = ctx.get("layer_types", None)
        nope_sel = ctx.lookup("position.nope_layers")
        nope = indices_of(nope_sel, n) if nope_sel is not None else []
        if types is None:  # transformers: chunked where no_rope_layers says rope
            chunked = [i for i in range(n) if i not in nope]
        else:
            types = ["full_attention" if t == "attention" else t for t in types]  # transformers' legacy name
            if len(types) != n or set(types) - {"chunked_attention", "full_attention"}:
                ctx.error(f"layer_types must list {n} entries of chunked_attention / full_attention (the two masks "
                          "transformers' Llama 4 builds)")
                return
            chunked = [i for i, t in enumerate(types) if t == "chunked_attention"]
        if not chunked:
            if ctx.has("attention_chunk_size"):
                ctx.warn(f"ignored key 'attention_chunk_size' ({size}: layer_types names no chunked_attention layer)")
            return
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            ctx.error(f"attention_chunk_size is {size!r} but layers {chunked} use chunked attention: transformers "
                      "5.23 raises when it builds their mask")
            return
        window: dict[str, Any] = {"size": size}
        if nope and chunked == [i for i in range(n) if i not in nope] and "pattern" not in nope_sel:
            window["layers"] = {**nope_sel, "invert": True}  # the rope layers, spelled as in the zoo specs
        elif (sel := selector_from_indices(chunked, n, allow_start=False)) is not None:
            window["layers"] = sel
        ctx.set("attention.chunked", window, *keys)

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        n = spec_get(spec, "num_layers")
        chunked = spec_get(spec, "attention.chunked")
        idx = indices_of(spec_get(chunked, "layers"), n) if chunked is not None else []
        if chunked is not None:
            hf["attention_chunk_size"] = spec_get(chunked, "size")
        else:  # transformers 5.23 builds the chunked mask in every forward (used or not) and raises without a size
            hf["attention_chunk_size"] = spec_get(spec, "max_seq_len")
            notes.append("no chunked attention: every layer_types entry is full_attention, and attention_chunk_size "
                         "is max_seq_len (transformers needs a value even when no layer uses it)")
        hf["layer_types"] = ["chunked_attention" if i in idx else "full_attention" for i in range(n)]

    return Rule(keys, load, dump, "chunked attention: layer_types, attention_chunk_size")


def llama4_temperature_rule() -> Rule:
    keys = ("attn_temperature_tuning", "attn_scale", "floor_scale")

    def load(ctx: ImportCtx) -> None:
        on = ctx.get("attn_temperature_tuning", True)
        scale, floor = ctx.get("attn_scale", 0.1), ctx.get("floor_scale", 8192)
        if not isinstance(on, bool):
            if not isinstance(on, (int, float)):
                ctx.error(f"attn_temperature_tuning is {on!r}: expected true or false")
                return
            ctx.warn(f"attn_temperature_tuning is {on!r}, not a bool (the first Llama 4 release wrote 4): transformers "
                     "5.23's strict config refuses it, its modeling code tests the truth value and vLLM read it as "
                     f"`> 0`, so it is imported as {'on' if on > 0 else 'off'}")
            on = on > 0
        if on:  # transformers applies it on the NoPE layers only, as the spec does
            ctx.set("attention.temperature_tuning", {"scale": _num(scale), "floor_scale": _num(floor)}, *keys)
        elif ctx.has("attn_scale") or ctx.has("floor_scale"):
            ctx.warn("ignored keys 'attn_scale' and 'floor_scale' (unused: attn_temperature_tuning is false)")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        tuning = spec_get(spec, "attention.temperature_tuning")
        hf["attn_temperature_tuning"] = tuning is not None
        if tuning is not None:
            hf["attn_scale"] = float(spec_get(tuning, "scale"))
            hf["floor_scale"] = spec_get(tuning, "floor_scale")

    return Rule(keys, load, dump, "q *= 1 + attn_scale * log(floor((pos + 1) / floor_scale) + 1) on NoPE layers")


def llama4_moe_layers_rule() -> Rule:
    """moe_layers (a list of layer indices) or, when null, every interleave_moe_layer_step-th layer from
    step - 1 on; transformers reads moe_layers first (an empty list: no MoE layer at all)."""
    keys = ("moe_layers", "interleave_moe_layer_step")

    def load(ctx: ImportCtx) -> None:
        n = ctx.lookup("num_layers")
        step = ctx.get("interleave_moe_layer_step", 1)
        listed = ctx.get("moe_layers", None)
        stepped = None
        if isinstance(step, int) and not isinstance(step, bool) and step >= 1:
            stepped = list(range(step - 1, n, step))
        if listed is None:
            if stepped is None:
                ctx.error(f"interleave_moe_layer_step {step!r}: transformers uses it as a range() step (it needs an "
                          "integer >= 1)")
                return
            idx = stepped
        else:
            if not isinstance(listed, list) or any(not isinstance(i, int) or isinstance(i, bool) for i in listed):
                ctx.error("moe_layers must be a list of layer indices")
                return
            idx = sorted({i for i in listed if 0 <= i < n})
            if len(idx) != len(set(listed)):
                ctx.warn(f"moe_layers names indices outside 0..{n - 1}; transformers never matches them")
            if ctx.has("interleave_moe_layer_step") and stepped != idx:
                ctx.warn(f"ignored key 'interleave_moe_layer_step' ({step}: moe_layers is set, and transformers "
                         "reads it first)")
        if not idx:
            ctx.error("moe_layers / interleave_moe_layer_step select no MoE layer: a dense Llama 4 is not a "
                      "Mixture-of-Experts model")
            return
        sel = selector_from_indices(idx, n)
        if sel is not None:
            ctx.set("moe.layers", sel, *keys)

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        n = spec_get(spec, "num_layers")
        idx = indices_of(spec_get(spec, "moe.layers"), n)
        hf["interleave_moe_layer_step"] = next((s for s in range(1, n + 1) if list(range(s - 1, n, s)) == idx), 1)
        hf["moe_layers"] = idx

    return Rule(keys, load, dump, "MoE layers: moe_layers, else every step-th layer")


def _llama4_qk_norm_load(value: Any, ctx: ImportCtx) -> Any:
    return "l2" if value else "none"


LLAMA4_TEXT = Table(
    "llama4_text", "Llama4ForCausalLM", "llama4",
    _skeleton(202048, 5120, 48, 131072, 1e-5) + (
        gqa_rule(40, 8, 128),  # transformers' default head_dim is 128 whatever hidden_size / heads is
        attention_bias_field(False),
        # weightless RMS ("L2") norm of q and k, after rope and on the rope layers only; eps = rms_norm_eps
        Field("use_qk_norm", "attention.qk_norm", True, load=_llama4_qk_norm_load, dump=lambda v: v == "l2"),
        rope_rule(500000.0),
        llama4_nope_rule(),  # after rope_rule (it writes position.nope_layers) and before the chunks (which read it)
        llama4_chunk_rule(),
        llama4_temperature_rule(),
        _activation(),
        Field("intermediate_size", "moe.experts.hidden_dim", 8192),  # the routed experts and the shared expert
        Field("intermediate_size_mlp", "ffn.hidden_dim", 16384),  # the dense layers only
        Field("num_local_experts", "moe.experts.num_routed", 16),
        Field("num_experts_per_tok", "moe.router.top_k", 1),
        llama4_moe_layers_rule(),
        # transformers 5.23's Llama4ForCausalLM computes no balance loss: the key is stored, never read; the spec keeps
        # it as the weight of the pooled loss transformers computes for its other MoE models (as the zoo specs do)
        Field("router_aux_loss_coef", "moe.balance.aux_loss_weight", 0.001),
        Ignore("router_jitter_noise", "stored but not read by transformers 5.23's Llama 4 router (no jitter)"),
        Ignore("for_llm_compressor", "a flag of the first release; not read by transformers 5.23"),
        Ignore("_attn_implementation_autoset", "metadata"),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER, *_POOLED,
        Const("moe.experts.num_shared", 1, "shared_expert: a SwiGLU FFN of width intermediate_size per MoE layer"),
        Const("moe.router.scoring", "sigmoid", "top-k of the logits, then sigmoid of the chosen ones (no renorm)"),
        Const("moe.router.weight_on_input", True, "the token is scaled by its score before the expert"),
    ),
    doc="Llama 4 text model: NoPE every 4th layer, chunked attention on the rope layers, L2 QK-norm, temperature "
        "tuning on NoPE layers, top-1 sigmoid routing on the expert input plus a shared expert.",
)


# --------------------------------------------------------------------------- MiniMax-01 (model_type minimax)

_MINIMAX_ALPHAS = ("full_attn_alpha_factor", "linear_attn_alpha_factor", "mlp_alpha_factor")
_MINIMAX_BETAS = ("full_attn_beta_factor", "linear_attn_beta_factor", "mlp_beta_factor")
_MINIMAX_LAYER_TYPES = {"full_attention": "full_attention", "linear_attention": "linear_attention",
                        "attention": "full_attention", "mamba": "linear_attention"}  # transformers' legacy names


def _minimax_types(ctx: ImportCtx, n: int) -> list[str] | None:
    """layer_types as transformers 5.23 builds them (default: full attention on even layers, linear on odd ones)."""
    types = ctx.get("layer_types", None)
    if types is None:
        return ["full_attention" if (i + 1) % 2 else "linear_attention" for i in range(n)]
    if (not isinstance(types, list) or len(types) != n
            or any(not isinstance(t, str) or t not in _MINIMAX_LAYER_TYPES for t in types)):
        ctx.error(f"layer_types must list {n} entries of full_attention / linear_attention (the two kinds of layer "
                  "transformers' MiniMax builds masks for)")
        return None
    return [_MINIMAX_LAYER_TYPES[t] for t in types]


def _minimax_types_quiet(ctx: ImportCtx, n: int) -> list[str] | None:
    """_minimax_types without reporting (minimax_layers_rule reports a bad layer_types once)."""
    probe = ImportCtx(ctx.hf)
    return _minimax_types(probe, n) if isinstance(n, int) else None


def _minimax_used(types: list[str] | None) -> dict[str, bool]:
    """Which of the three residual scalings some layer uses (all of them when layer_types is unreadable)."""
    kinds = set(types) if types is not None else {"full_attention", "linear_attention"}
    return {"full": "full_attention" in kinds, "linear": "linear_attention" in kinds, "mlp": True}


def minimax_residual_rule() -> Rule:
    """transformers' MiniMaxDecoderLayer: h = input_layernorm(x); x = alpha * h + beta * attn(h);
    h = post_attention_layernorm(x); x = alpha' * h + beta' * mlp(h). The residual is taken after the norm, so
    every config is moezoo's `post` placement (norm(alpha * x + f(x)), the norms shifted by one position), and the
    spec has one alpha and no beta: the alphas that some layer uses must agree, the betas be 1."""
    keys = _MINIMAX_ALPHAS + _MINIMAX_BETAS

    def load(ctx: ImportCtx) -> None:
        n = ctx.lookup("num_layers")
        used = _minimax_used(_minimax_types_quiet(ctx, n))
        alphas = {k: ctx.get(k, 1) for k in _MINIMAX_ALPHAS}
        betas = {k: ctx.get(k, 1) for k in _MINIMAX_BETAS}
        bad = [k for k, v in {**alphas, **betas}.items()
               if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)]
        if bad:
            ctx.error(f"keys {', '.join(repr(k) for k in bad)} must be numbers")
            return
        for key in keys:  # a scaling of a kind of layer the config does not have is never read
            if not used[key.split("_")[0]] and ctx.has(key) and ctx.raw(key) != 1:
                ctx.warn(f"ignored key '{key}' ({ctx.raw(key)}: no layer of this config is "
                         f"{key.split('_')[0]}_attention)")
        live_alphas = {k: v for k, v in alphas.items() if used[k.split("_")[0]]}
        live_betas = {k: v for k, v in betas.items() if used[k.split("_")[0]]}
        ok = True
        if len({float(v) for v in live_alphas.values()}) > 1:
            ok = False
            ctx.error("keys " + ", ".join(f"'{k}' ({v})" for k, v in live_alphas.items()) + " differ: moezoo's "
                      "post-norm has one residual scale norm.residual_alpha for every sub-layer")
        not_one = {k: v for k, v in live_betas.items() if v != 1}
        if not_one:
            ok = False
            ctx.error(("keys " if len(not_one) > 1 else "key ") + ", ".join(f"'{k}' ({v})" for k, v in not_one.items())
                      + (" are" if len(not_one) > 1 else " is") + " not 1: moezoo's "
                      "post-norm norm(alpha * x + f(x)) has no scale on the sub-layer output")
        if not ok:
            return
        ctx.set("norm.placement", "post", *keys)
        ctx.set("norm.residual_alpha", float(alphas["mlp_alpha_factor"]), *(k for k in _MINIMAX_ALPHAS if ctx.has(k)))

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        alpha = float(spec_get(spec, "norm.residual_alpha"))
        for key in _MINIMAX_ALPHAS:
            hf[key] = alpha
        for key in _MINIMAX_BETAS:
            hf[key] = 1.0

    return Rule(keys, load, dump, "residual scalings -> norm.placement post, norm.residual_alpha")


def minimax_layers_rule() -> Rule:
    """layer_types -> hybrid_attention (lightning layers with the softmax attention's heads and head_dim, blocks of
    block_size), and sliding_window, which transformers applies to the full_attention layers only (the linear ones
    get its recurrent mask)."""
    keys = ("layer_types", "block_size", "sliding_window")

    def load(ctx: ImportCtx) -> None:
        n = ctx.lookup("num_layers")
        size = ctx.get("block_size", 256)
        window = ctx.get("sliding_window", None)
        if not isinstance(n, int):
            return
        types = _minimax_types(ctx, n)
        if types is None:
            return
        full = [i for i, t in enumerate(types) if t == "full_attention"]
        linear = [i for i, t in enumerate(types) if t == "linear_attention"]
        if not full:
            ctx.error("layer_types names no full_attention layer: moezoo's hybrid attention keeps softmax attention "
                      "on some layers")
            return
        if window:
            _window(ctx, window, full, "sliding_window", "layer_types")
        if not linear:
            if ctx.has("block_size"):
                ctx.warn(f"ignored key 'block_size' ({size}: layer_types names no linear_attention layer)")
            return
        act = ctx.raw("hidden_act", "silu")
        if act not in ("silu", "swish"):
            ctx.error(f"key 'hidden_act' is {act!r}: transformers' lightning layers apply it to q, k and v, and "
                      "moezoo's lightning attention uses SiLU there")
        h, d = ctx.lookup("attention.num_heads"), ctx.lookup("model_dim")
        hd = ctx.lookup("attention.head_dim") or (d // h if isinstance(d, int) and isinstance(h, int) and h else None)
        ctx.set("hybrid_attention", {"kind": "lightning", "num_heads": h, "head_dim": hd, "block_size": size,
                                     "softmax_layers": selector_from_indices(full, n) or {"every": 1}},
                "layer_types", "block_size", "num_attention_heads", "head_dim")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        n = spec_get(spec, "num_layers")
        hybrid = spec_get(spec, "hybrid_attention")
        full = indices_of(spec_get(hybrid, "softmax_layers"), n) if hybrid is not None else list(range(n))
        hf["layer_types"] = ["full_attention" if i in full else "linear_attention" for i in range(n)]
        if hybrid is not None:
            hf["block_size"] = spec_get(hybrid, "block_size")
        size, _ = _dump_window_indices(spec)
        hf["sliding_window"] = size

    return Rule(keys, load, dump, "layer_types: full_attention (softmax) / linear_attention (lightning)")


def minimax_rotary_rule() -> Rule:
    """The original MiniMax-01 code rotates the first `rotary_dim` dims of each head (64 of 128 in MiniMax-Text-01);
    transformers 5.23's MiniMaxAttention never reads rotary_dim and rotates the full head_dim (its default rope has
    no partial rotary; the rope types that read rope_parameters.partial_rotary_factor produce cos/sin narrower than
    the head, which apply_rotary_pos_emb cannot broadcast). The spec describes what transformers builds, because
    Model.from_hf is checked against transformers: position.rotary_dim stays unset (the full head) and import-hf
    warns. A spec with a partial position.rotary_dim therefore cannot be exported: the round trip names it."""

    def load(ctx: ImportCtx) -> None:
        if not ctx.has("rotary_dim"):
            return
        value = ctx.get("rotary_dim", None)
        h, d = ctx.lookup("attention.num_heads"), ctx.lookup("model_dim")
        hd = ctx.lookup("attention.head_dim") or (d // h if isinstance(d, int) and isinstance(h, int) and h else None)
        if value in (None, hd):
            ctx.warn(f"ignored key 'rotary_dim' ({value}: not read by transformers 5.23, which rotates the whole "
                     f"head of {hd} dims)")
            return
        ctx.warn(f"ignored key 'rotary_dim' ({value}): THE ORIGINAL MODEL ROTATES ONLY THE FIRST {value} OF THE {hd} "
                 f"DIMS OF EACH HEAD, but transformers 5.23's MiniMaxAttention never reads rotary_dim and rotates all "
                 f"{hd}. The spec follows transformers (position.rotary_dim unset = the whole head), as Model.from_hf "
                 f"is checked against it; set position.rotary_dim: {value} to describe the original model (export-hf "
                 "then refuses it: no minimax config.json key can say it)")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        pass  # nothing to write: a partial rotary_dim fails the round trip (position.rotary_dim)

    return Rule(("rotary_dim",), load, dump, "rotary_dim: read by MiniMax's own code, not by transformers")


def minimax_remote_code_rule() -> Rule:
    """Keys of the released MiniMax-Text-01 / MiniMax-M1 config.json (their own remote code) that transformers 5.23
    does not read: its conversion to model_type minimax renamed them (attn_type_list -> layer_types,
    layernorm_*_alpha/beta -> *_alpha_factor / *_beta_factor), and no transformers code maps the old names. They are
    ignored, with a warning that says whether they agree with the keys transformers reads."""
    remote = {"layernorm_full_attention_alpha": "full_attn_alpha_factor",
              "layernorm_full_attention_beta": "full_attn_beta_factor",
              "layernorm_linear_attention_alpha": "linear_attn_alpha_factor",
              "layernorm_linear_attention_beta": "linear_attn_beta_factor",
              "layernorm_mlp_alpha": "mlp_alpha_factor", "layernorm_mlp_beta": "mlp_beta_factor"}
    keys = ("postnorm", "attn_type_list", "shared_intermediate_size", "shared_moe_mode", *remote)

    def load(ctx: ImportCtx) -> None:
        for old, new in remote.items():
            if ctx.has(old):
                value, read = ctx.raw(old), ctx.raw(new, 1)
                agree = "agrees" if value == read else f"DISAGREES: transformers uses {new} = {read}"
                ctx.warn(f"ignored key '{old}' ({value}: the remote code's name of {new}, which transformers 5.23 "
                         f"reads instead; it {agree})")
        if ctx.has("postnorm"):
            value = ctx.raw("postnorm")
            extra = "" if value else ("; DISAGREES: false is the remote code's pre-norm residual, transformers always "
                                      "builds the post-norm one")
            ctx.warn(f"ignored key 'postnorm' ({value}: a switch of the remote code; transformers 5.23 always takes "
                     f"the residual after the norm, norm.placement post{extra})")
        if ctx.has("attn_type_list"):
            value = ctx.raw("attn_type_list")
            n = ctx.lookup("num_layers")
            types = _minimax_types_quiet(ctx, n)
            mine = [1 if t == "full_attention" else 0 for t in types] if types is not None else None
            agree = "agrees" if value == mine else "DISAGREES with the layer_types transformers builds"
            ctx.warn(f"ignored key 'attn_type_list' (the remote code's 1 = softmax / 0 = lightning per layer; "
                     f"transformers 5.23 reads layer_types instead; it {agree})")
        if ctx.has("shared_intermediate_size"):
            value = ctx.raw("shared_intermediate_size")
            extra = "" if not value else (f"; THE ORIGINAL MODEL HAS A SHARED EXPERT OF WIDTH {value}, which "
                                          "transformers does not build (nor does the spec)")
            ctx.warn(f"ignored key 'shared_intermediate_size' ({value}: not read by transformers 5.23{extra})")
        if ctx.has("shared_moe_mode"):
            ctx.warn(f"ignored key 'shared_moe_mode' ({ctx.raw('shared_moe_mode')!r}: the remote code's gate of its "
                     "shared expert; not read by transformers 5.23)")

    def dump(spec: Any, hf: dict, notes: list[str]) -> None:
        pass

    return Rule(keys, load, dump, "the released (remote-code) config's own keys")


MINIMAX = Table(
    "minimax", "MiniMaxForCausalLM", "minimax",
    _skeleton(32000, 4096, 32, 131072, 1e-5) + (
        gqa_rule(32, 8),  # head_dim: null -> hidden_size // num_attention_heads
        rope_rule(1e6),  # (a partial_rotary_factor != 1 is an error: see minimax_rotary_rule)
        minimax_rotary_rule(),
        minimax_layers_rule(),  # after gqa_rule: the lightning layers use the softmax attention's heads
        minimax_residual_rule(),  # after the layer types: a scaling no layer uses is not compared
        minimax_remote_code_rule(),  # last: it compares the remote keys with what the rules above read
        _activation(),
        Field("intermediate_size", "moe.experts.hidden_dim", 14336, also=("ffn.hidden_dim",)),
        Field("num_local_experts", "moe.experts.num_routed", 8, aliases=("num_experts",)),
        Field("num_experts_per_tok", "moe.router.top_k", 2),
        Field("router_aux_loss_coef", "moe.balance.aux_loss_weight", 0.001),
        Field("router_jitter_noise", "moe.router.noise", 0.0, load=_jitter_load, dump=_jitter_dump_zero),
        Ignore("attention_dropout", DROPOUT),
        *_LLAMA_NORM, *_ROUTER, *_POOLED,
        Const("moe.router.scoring", "softmax"),
        Const("moe.router.renormalize", True, "softmax, top-k, divide by the sum (as Mixtral)"),
    ),
    doc="MiniMax-01 as transformers builds it: lightning (linear) attention on the linear_attention layers, softmax "
        "GQA with rope over the whole head on the others, the residual taken after each norm (post-norm with one "
        "alpha), every layer a Mixtral-style MoE.",
)


TABLES: dict[str, Table] = {t.model_type: t for t in (MIXTRAL, DBRX, QWEN2_MOE, QWEN3_MOE, DEEPSEEK_V2, DEEPSEEK_V3,
                                                        OLMOE, GPT_OSS, DEEPSEEK, SWITCH, LLAMA4_TEXT,
                                                        MINIMAX)}

# model_types import-hf does not read (yet): the message says why and what to do instead.
NOT_YET: dict[str, str] = {
    "llama4": ("this is the multimodal Llama 4 config (Llama4ForConditionalGeneration, with a vision encoder); the "
               "text model's config is model_type llama4_text: save the `text_config` block of this config.json as a "
               "config.json of its own and import that"),
    # Not a transformers model_type: the released MiniMax-Text-01 config.json, for its own remote code
    # (MiniMaxText01ForCausalLM). Its keys are those transformers' conversion renamed, so reading it through the
    # minimax table would be guesswork; the message points at the converted config instead.
    "minimax_text_01": ("this is the remote-code config of the MiniMax-Text-01 release (MiniMaxText01ForCausalLM, "
                        "keys attn_type_list, postnorm, layernorm_*_alpha/beta, rotary_dim); transformers' version "
                        "is model_type minimax (MiniMaxAI/MiniMax-Text-01-hf: layer_types, *_alpha_factor / "
                        "*_beta_factor): import that config.json, or use specs/minimax_text_01.yaml"),
}


def all_entries(table: Table) -> tuple[Entry, ...]:
    """The table's own entries, then the keys every config may carry (unless the table lists them)."""
    own = table.known_keys()
    return table.entries + tuple(e for e in COMMON if e.hf not in own)


__all__ = [
    "NOT_YET",
    "REQUIRED",
    "TABLES",
    "Const",
    "Field",
    "Fixed",
    "Ignore",
    "ImportCtx",
    "Rule",
    "Table",
    "all_entries",
    "indices_of",
    "selector_from_indices",
    "set_hf",
    "spec_get",
]
