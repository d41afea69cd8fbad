"""Exact parameter, FLOP and memory accounting, read off the model graph.

Conventions (see docs/accounting.md and the oracles in tests/test_accounting.py):
- Parameters are exact integers; tied / shared tensors once; buffers (aux-free routing bias, rotary
  tables, hash tables) are not parameters. `total` is the main model without MTP; `mtp` the MTP
  modules' own tensors. `active` is what one token touches, input embedding and LM head included.
- FLOPs use 2 per multiply-add; training = 3 x forward (4 x with activation recomputation). The
  default convention ("deepseek") counts the matmul weights a token touches (attention projections,
  dense FFN, top-k routed + shared experts, router, LM head; not the input embedding, not norms) plus
  causal attention 2 * n_h * (d_qk + d_v) * S / 2 per layer, MTP reported separately. Presets
  reproduce Megatron-LM's num_floating_point_operations (training.py @ 001b00c2), torchtitan's 2026
  formula (models/utils.py @ 01c01c88) and its 2025 one (@ 76dd118b), and Kaplan's 6N; a fixed-formula
  preset refuses a switch it cannot apply.
- Encoder-decoders: one "token" is one encoder position plus one decoder position (input and target
  sequences of the same length S); cross-attention attends S encoder positions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from typing import Any

from moezoo.graph import (
    COMPONENTS,
    EMBEDDING,
    LM_HEAD,
    MTP,
    ROUTED,
    ROUTER,
    AttentionCore,
    ModelGraph,
    lower,
    routed_fraction,
)
from moezoo.spec.schema import GQASpec, MLASpec, ModelSpec, TokenChoiceRouter

BYTES = {"fp32": 4, "bf16": 2, "fp8": 1}
# AdamW mixed precision: bf16 weight (2) + bf16 grad (2) + fp32 master (4) + two fp32 moments (8).
TRAINING_BYTES_PER_PARAM = 16
KV_BYTES = 2  # the KV cache is held in bf16


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ParamCounts:
    total: int
    active: int
    mtp: int
    mtp_active: int
    embedding: int
    lm_head: int
    by_component: dict[str, int]
    active_by_component: dict[str, int]
    by_layer: dict[str, int]
    routed_expert_params: int  # all routed-expert tensors of the main model
    one_expert_params: int  # one routed expert of one layer
    tied: bool

    @property
    def active_non_embedding(self) -> int:
        """Active parameters without the input embedding (LM head kept)."""
        return self.active - self.embedding

    @property
    def active_without_embedding_and_head(self) -> int:
        return self.active - self.embedding - self.lm_head

    @property
    def expert_share(self) -> float:
        return self.routed_expert_params / self.total if self.total else 0.0


def count_params(graph: ModelGraph) -> ParamCounts:
    """One pass over the graph's tensor nodes (each tensor once, however many modules use it)."""
    spec = graph.spec
    by_component: dict[str, int] = defaultdict(int)
    active_by_component: dict[str, float] = defaultdict(float)
    by_layer: dict[str, int] = defaultdict(int)
    frac = routed_fraction(spec) if spec.moe is not None else 1.0
    mtp_total, mtp_active = 0, 0.0
    first_moe: tuple | None = None  # (stack, layer) of the first routed-expert tensor of the main model
    one_expert = 0
    for _, data in graph.g.nodes(data=True):
        if data["type"] != "param":
            continue
        p = data["param"]
        n = p.numel
        share = frac if p.expert_axis else 1.0
        if data["mtp"]:
            mtp_total += n
            mtp_active += n * share
            continue
        by_component[p.component] += n
        active_by_component[p.component] += n * share
        by_layer[f"{p.stack}.{p.layer}" if p.layer is not None else (p.stack or "model")] += n
        if p.expert_axis:
            if first_moe is None:
                first_moe = (p.stack, p.layer)
            if (p.stack, p.layer) == first_moe:
                one_expert += n // p.shape[0]
    total = sum(by_component.values())
    active = sum(active_by_component.values())
    return ParamCounts(
        total=total,
        active=_exact(active),
        mtp=mtp_total,
        mtp_active=_exact(mtp_active),
        embedding=by_component.get(EMBEDDING, 0),
        lm_head=by_component.get(LM_HEAD, 0),
        by_component={c: by_component[c] for c in COMPONENTS if by_component.get(c)},
        active_by_component={c: _exact(active_by_component[c]) for c in COMPONENTS if active_by_component.get(c)},
        by_layer=dict(by_layer),
        routed_expert_params=by_component.get(ROUTED, 0),
        one_expert_params=one_expert,
        tied=spec.embedding.tied,
    )


def _exact(x: float) -> int:
    """Active counts are integers whenever k/E of a whole number of experts is taken; round the float sum."""
    return round(x)


def fine_grained_ratio(spec: ModelSpec) -> float | None:
    """Expert width / the dense FFN width it replaces (DeepSeekMoE's fine-grained segmentation)."""
    if spec.moe is None:
        return None
    ref = spec.moe.experts.reference_dense_dim or spec.ffn.hidden_dim
    return spec.moe.experts.hidden_dim / ref


# --------------------------------------------------------------------------- FLOPs


@dataclass(frozen=True)
class FlopConvention:
    """Switches of the FLOP count. `name` is the preset it came from."""

    name: str = "deepseek"
    causal: bool = True
    include_router: bool = True
    include_lm_head: bool = True
    include_input_embedding: bool = False
    include_mtp: bool = False
    recompute: bool = False  # full activation recomputation: one more forward in training
    formula: str = "graph"  # "graph", "megatron", "torchtitan", "torchtitan-2025", "6n"


PRESETS: dict[str, FlopConvention] = {
    "deepseek": FlopConvention(),
    "noncausal": FlopConvention(name="noncausal", causal=False),
    "megatron": FlopConvention(name="megatron", include_router=False, include_mtp=True, formula="megatron"),
    "torchtitan": FlopConvention(name="torchtitan", causal=False, include_mtp=True, formula="torchtitan"),
    "torchtitan-2025": FlopConvention(name="torchtitan-2025", causal=False, include_mtp=True,
                                      formula="torchtitan-2025"),
    "6n": FlopConvention(name="6n", formula="6n"),
}
# The peers' source each formula preset reproduces (read for their facts; see docs/accounting.md).
MEGATRON_SOURCE = "Megatron-LM megatron/training/training.py num_floating_point_operations @ 001b00c2"
TORCHTITAN_SOURCE = ("torchtitan torchtitan/models/utils.py get_nparams_and_active_nparams + "
                     "quadratic_attention_flops_per_token @ 01c01c88 (2026)")
TORCHTITAN_2025_SOURCE = "torchtitan torchtitan/models/utils.py get_moe_model_nparams_and_flops @ 76dd118b (2025)"
CONVENTION_HELP = {
    "deepseek": "default: matmul weights touched + causal attention; reproduces DeepSeek's 250 / 155 GFLOPs",
    "noncausal": "as deepseek, but attention over the full sequence (no causal halving)",
    "megatron": f"{MEGATRON_SOURCE}: no router, MTP as an extra layer + head (--no-mtp drops it)",
    "torchtitan": f"{TORCHTITAN_SOURCE}: 6*N_active without untied input embedding (a tied one is the head, "
                  "counted) + 6*n_h*(d_qk+d_v)*min(S, window) per layer",
    "torchtitan-2025": f"{TORCHTITAN_2025_SOURCE}: 6*(N_active - N_emb) + 6*L*n_h*(d_qk+d_v)*S, no window; "
                       "a tied embedding/head tensor is excluded as embedding",
    "6n": "Kaplan et al.: 6 * active parameters without the input embedding",
}
# Switches a fixed-formula preset can apply; any other switch set to a value the formula does not have is refused.
FORMULA_SWITCHES = {"megatron": {"include_mtp", "recompute"}, "torchtitan": {"include_mtp", "recompute"},
                    "torchtitan-2025": {"include_mtp", "recompute"}, "6n": {"include_mtp", "recompute"}}
SWITCH_FLAGS = {"causal": "--causal/--no-causal", "include_router": "--router/--no-router",
                "include_lm_head": "--lm-head/--no-lm-head",
                "include_input_embedding": "--input-embedding/--no-input-embedding",
                "include_mtp": "--mtp/--no-mtp", "recompute": "--recompute/--no-recompute"}


def convention(name: str = "deepseek", **switches: Any) -> FlopConvention:
    """A preset with switches applied. A fixed-formula preset (megatron, torchtitan, 6n) refuses a switch it
    cannot apply, so a report never claims a switch the figure does not reflect."""
    if name not in PRESETS:
        raise ValueError(f"unknown FLOP convention '{name}' (known: {', '.join(PRESETS)})")
    base = PRESETS[name]
    allowed = FORMULA_SWITCHES.get(base.formula)
    if allowed is not None:
        for key, value in switches.items():
            if key not in allowed and getattr(base, key) != value:
                ok = ", ".join(SWITCH_FLAGS[k] for k in sorted(allowed))
                raise ValueError(f"the {name} preset is a fixed formula: {SWITCH_FLAGS[key]} cannot be applied "
                                 f"to it (it honours {ok})")
    return replace(base, **switches)


def _mean_context(core: AttentionCore, seq_len: int, causal: bool) -> float:
    """Average number of keys a query attends to."""
    S = seq_len
    if core.kind == "cross" or core.kind == "bidirectional":
        w = core.window or S
        return float(min(w, S))
    if not causal:
        return float(min(core.window or S, S))
    if core.window is None or core.window >= S:
        return S / 2
    if core.chunked:
        return core.window / 2
    w = core.window
    return w - w * w / (2 * S)  # mean of min(i, w) over positions


def _core_flops(core: AttentionCore, seq_len: int, causal: bool) -> float:
    """Forward FLOPs per query token of the attention core (scores and weighted values)."""
    if core.kind == "linear":
        # Lightning attention, blockwise: inside a block, q k^T and its product with v over the block's pairs
        # (half of them when causal); across blocks, per head, each query reads the d x d state left by the
        # earlier blocks (not in the first block, where it is empty) and each key / value updates it (not in
        # the last block, whose update nothing reads).
        H, d, B, S = core.num_heads, core.qk_dim, core.block_size or 1, seq_len
        sizes = [B] * (S // B) + ([S % B] if S % B else [])
        pairs = sum(n * n / 2 if causal else n * n for n in sizes)
        state = (S - sizes[0]) + (S - sizes[-1])  # state reads + state updates, in tokens
        return (2 * H * (d + d) * pairs + 2 * H * d * d * state) / S
    return 2 * core.num_heads * (core.qk_dim + core.v_dim) * _mean_context(core, seq_len, causal)


@dataclass(frozen=True)
class FlopCounts:
    seq_len: int
    convention: FlopConvention
    forward_per_token: float
    train_per_token: float
    by_component: dict[str, float]  # forward
    mtp_forward_per_token: float  # forward FLOPs of the MTP modules (not in the figures above unless include_mtp)
    formula: str = "graph"  # the formula actually used (a preset's formula, or "graph" where it does not apply)
    note: str = ""  # why a preset's formula was not used, or what it leaves out
    applied: dict[str, bool] | None = None  # the switches as the figure reflects them


def _graph_flops(graph: ModelGraph, seq_len: int, conv: FlopConvention) -> tuple[dict[str, float], dict[str, float]]:
    """Forward FLOPs per token by component, (main model, MTP modules), in one pass over the graph."""
    parts: tuple[dict[str, float], dict[str, float]] = (defaultdict(float), defaultdict(float))
    nodes = graph.g.nodes
    for src, dst, edge in graph.g.edges(data=True):
        use = edge.get("use")
        if use is None:  # a "flow" edge between modules
            continue
        mod = nodes[src]
        out = parts[1] if mod["mtp"] else parts[0]
        p = nodes[dst]["param"]
        if use == "lookup":
            if conv.include_input_embedding and p.component == EMBEDDING:
                out[EMBEDDING] += 2 * p.numel
            continue
        if use != "matmul":
            continue
        comp = LM_HEAD if mod["kind"] == "lm_head" else p.component
        if comp == LM_HEAD and not conv.include_lm_head:
            continue
        if comp == ROUTER and not conv.include_router:
            continue
        out[comp] += 2 * p.numel * edge["fraction"]
    for _, mod in nodes(data=True):
        core = mod.get("core")
        if core is not None:
            (parts[1] if mod["mtp"] else parts[0])["attention_core"] += _core_flops(core, seq_len, conv.causal)
    return dict(parts[0]), dict(parts[1])


def count_flops(graph: ModelGraph, seq_len: int = 4096, conv: FlopConvention | None = None,
                params: ParamCounts | None = None) -> FlopCounts:
    conv = conv or FlopConvention()
    spec = graph.spec
    params = params or count_params(graph)
    train_mult = 4 if conv.recompute else 3
    main, mtp_parts = _graph_flops(graph, seq_len, conv)
    mtp_forward = sum(mtp_parts.values())
    formula, note = conv.formula, ""
    if formula == "megatron" and (spec.is_encoder_decoder or spec.hybrid_attention is not None):
        # Megatron-LM's num_floating_point_operations describes decoder-only softmax-attention models; for
        # the others, count the graph with Megatron's switches (causal, no router, MTP included).
        formula = "graph"
        note = ("Megatron-LM's formula covers decoder-only softmax-attention models; "
                "counted from the graph with its switches (causal, no router, MTP included)")
    if formula == "graph":
        by = dict(main)
        if conv.include_mtp and mtp_parts:
            by[MTP] = mtp_forward
        forward = sum(by.values())
        train = train_mult * forward
    elif formula == "megatron":
        train = megatron_train_flops(spec, seq_len, include_mtp=conv.include_mtp)
        forward = train / 3
        train = forward * train_mult
        by = {"total": forward}
    elif formula in ("torchtitan", "torchtitan-2025"):
        # 2026 (get_nparams_and_active_nparams): an embedding table is excluded unless it is also the output
        # head, so a tied head is charged. 2025 (get_moe_model_nparams_and_flops): every tensor named like an
        # embedding is excluded, and a tied tensor is registered under the embedding's name.
        emb_out = params.embedding if (formula == "torchtitan-2025" or not params.tied) else 0
        n = params.active - emb_out + (params.mtp_active if conv.include_mtp else 0)
        if formula == "torchtitan-2025" and params.tied:
            note = "torchtitan-2025 excludes the tied embedding/head tensor, so the LM head is not charged"
        att = 0.0
        for mod in graph.modules(mtp=False):
            core = mod.get("core")
            if core is not None and core.kind != "linear":
                keys = seq_len
                if formula == "torchtitan" and core.window is not None and not core.chunked:
                    keys = min(seq_len, core.window)  # quadratic_attention_flops_per_token(sliding_window_size)
                att += 2 * core.num_heads * (core.qk_dim + core.v_dim) * keys
        forward = 2 * n + att
        train = train_mult * forward
        by = {"weights": 2 * n, "attention_core": att}
    elif formula == "6n":
        forward = 2 * (params.active_non_embedding + (params.mtp_active if conv.include_mtp else 0))
        train = train_mult * forward
        by = {"weights": forward}
    else:  # pragma: no cover - guarded by convention()
        raise ValueError(conv.formula)
    ordered = {k: by[k] for k in sorted(by, key=lambda k: (COMPONENTS + ("attention_core", MTP)).index(k)
                                         if k in COMPONENTS + ("attention_core", MTP) else 99)}
    applied = {k: v for k, v in asdict(conv).items() if k not in ("name", "formula")}
    if formula == "torchtitan-2025" and params.tied:
        applied["include_lm_head"] = False
    if not mtp_parts:
        applied["include_mtp"] = False  # nothing to include
    return FlopCounts(seq_len, conv, forward, train, ordered, mtp_forward, formula, note, applied)


def encoder_decoder_sequence_flops(graph: ModelGraph, source_len: int, target_len: int) -> float:
    """Forward FLOPs of one (source, target) sequence pair of an encoder-decoder, the unit of the Switch
    paper's Table 9: every matmul a token touches (router and LM head included, top-k experts), attention
    over the whole sequence (encoder self-attention and cross-attention over `source_len` keys, decoder
    self-attention over `target_len` keys, no causal halving)."""
    spec = graph.spec
    if not spec.is_encoder_decoder:
        raise ValueError(f"{spec.name} is not an encoder-decoder")
    lengths = {"encoder": source_len, "decoder": target_len}
    total = 0.0
    for mod, p, edge in graph.uses(mtp=False):
        if edge["use"] == "matmul":
            total += 2 * p.numel * edge["fraction"] * lengths.get(mod["stack"] or "decoder", target_len)
    for mod in graph.modules(mtp=False):
        core = mod.get("core")
        if core is None:
            continue
        keys = source_len if mod["stack"] == "encoder" or core.kind == "cross" else target_len
        total += 2 * core.num_heads * (core.qk_dim + core.v_dim) * keys * lengths[mod["stack"]]
    return total


def megatron_train_flops(spec: ModelSpec, seq_len: int, include_mtp: bool = True) -> float:
    """Megatron-LM's `num_floating_point_operations` per token (training), for decoder-only models
    (megatron/training/training.py at commit 001b00c2, `transformer_flops`).

    6*[h*g*(f*L_d + (k*f_e + f_s)*L_m) + (L+D)*A_lin + D*(3h + 2h^2) + h*V*(D+1)] + 6*S*(L+D)*A_core;
    the MTP layer is counted as one more layer of the last layer's type. include_mtp=False is a run without
    --mtp-num-layers (D = 0).
    """
    h, V, S, L = spec.model_dim, spec.vocab_size, seq_len, spec.num_layers
    g = spec.ffn.num_matrices
    D = spec.mtp.depth if spec.mtp is not None and include_mtp else 0
    moe_layers = [i for i in range(L) if spec.is_moe_layer(i)]
    L_m, L_d = len(moe_layers), L - len(moe_layers)
    if spec.moe is not None:
        ex, r = spec.moe.experts, spec.moe.router
        k = r.top_k if isinstance(r, TokenChoiceRouter) else 1
        f_s = ex.num_shared * (ex.shared_hidden_dim or ex.hidden_dim)
        mlp_moe = k * ex.hidden_dim + f_s
        last_is_moe = spec.is_moe_layer(L - 1)
    else:
        mlp_moe, last_is_moe = 0, False
    f = spec.ffn.hidden_dim
    mlp = h * g * (f * (L_d + (0 if last_is_moe else D)) + mlp_moe * (L_m + (D if last_is_moe else 0)))
    att = spec.attention
    if isinstance(att, MLASpec):
        r_q, r_kv = att.q_lora_rank, att.kv_lora_rank
        d_qk = att.qk_nope_head_dim + att.qk_rope_head_dim
        q = r_q * (h + att.num_heads * d_qk + 1) if r_q else h * att.num_heads * d_qk
        a_lin = q + r_kv * (h + att.num_heads * (att.qk_nope_head_dim + att.v_head_dim) + 1) \
            + h * att.qk_rope_head_dim + att.num_heads * att.v_head_dim * h
        a_core = att.num_heads * d_qk / 2 + att.num_heads * att.v_head_dim / 2
    else:
        assert isinstance(att, GQASpec)
        n_h = att.num_heads
        n_kv = att.num_kv_heads or n_h
        d_h = att.head_dim or h // n_h
        a_lin = h * d_h * (n_h + 2 * n_kv) + n_h * d_h * h
        a_core = n_h * d_h
    per_token = mlp + (L + D) * a_lin + D * (3 * h + 2 * h * h) + h * V * (D + 1)
    return 6 * per_token + 6 * S * (L + D) * a_core


# --------------------------------------------------------------------------- memory


def _kv_elements_per_token(spec: ModelSpec) -> int:
    """K/V elements one token stores in one softmax self-attention layer."""
    att = spec.attention
    if isinstance(att, MLASpec):  # the joint latent c_KV plus the decoupled rope key shared by all heads
        return att.kv_lora_rank + att.qk_rope_head_dim
    n_kv = att.num_kv_heads or att.num_heads
    d_h = att.head_dim or spec.model_dim // att.num_heads
    return 2 * n_kv * d_h


def _softmax_layers(spec: ModelSpec) -> list[int]:
    """Decoder layers with softmax attention (MiniMax's lightning layers keep a fixed-size state instead)."""
    hybrid = spec.hybrid_attention
    return [i for i in range(spec.num_layers) if hybrid is None or hybrid.softmax_layers.selects(i)]


def kv_cache_bytes_per_token(spec: ModelSpec, dtype_bytes: int = KV_BYTES) -> int:
    """Bytes of KV cache one token adds: every softmax-attention decoder layer (sliding-window and chunked
    layers included, i.e. a context no longer than the window); MLA caches c_KV plus the rope key; an
    encoder-decoder adds the cross-attention K/V of one encoder position in every decoder layer."""
    total = _kv_elements_per_token(spec) * len(_softmax_layers(spec))
    if spec.is_encoder_decoder:
        total += _kv_elements_per_token(spec) * spec.num_layers
    return total * dtype_bytes


def kv_cache_bytes_per_sequence(spec: ModelSpec, seq_len: int, dtype_bytes: int = KV_BYTES) -> int:
    """Bytes of inference cache for one sequence of `seq_len` tokens: sliding-window layers hold at most
    the window, chunked layers at most one chunk, lightning (linear) layers a fixed H x d x d state per
    layer (same dtype), and an encoder-decoder caches cross-attention K/V over `seq_len` encoder positions."""
    att = spec.attention
    per_token = _kv_elements_per_token(spec)
    total = 0
    for i in _softmax_layers(spec):
        held = seq_len
        if isinstance(att, GQASpec):
            if att.sliding_window is not None and att.sliding_window.layers.selects(i):
                held = min(held, att.sliding_window.size)
            if att.chunked is not None and att.chunked.layers.selects(i):
                held = min(held, att.chunked.size)
        total += per_token * held
    hybrid = spec.hybrid_attention
    if hybrid is not None:
        total += (spec.num_layers - len(_softmax_layers(spec))) * hybrid.num_heads * hybrid.head_dim ** 2
    if spec.is_encoder_decoder:
        total += per_token * seq_len * spec.num_layers
    return total * dtype_bytes


def memory_figures(spec: ModelSpec, params: ParamCounts, *, ep: int = 1, dp: int = 1,
                   seq_len: int = 4096) -> dict[str, Any]:
    n = params.total + params.mtp
    out: dict[str, Any] = {
        "kv_cache_bytes_per_token": kv_cache_bytes_per_token(spec),
        "kv_cache_bytes_per_sequence": kv_cache_bytes_per_sequence(spec, seq_len),
        "kv_cache_dtype": "bf16",
        "weight_bytes": {k: n * b for k, b in BYTES.items()},
        "training_bytes_per_param": TRAINING_BYTES_PER_PARAM,
        "training_state_bytes": n * TRAINING_BYTES_PER_PARAM,
    }
    if ep > 1 or dp > 1:
        out["per_gpu"] = per_gpu_share(params, ep=ep, dp=dp)
    return out


def per_gpu_share(params: ParamCounts, *, ep: int, dp: int) -> dict[str, int]:
    """Parameters and training bytes per GPU with experts split over `ep` ranks and everything else
    sharded (FSDP / ZeRO-3) over the `dp` data-parallel ranks; expert shards are further split over
    the dp/ep ranks that hold the same experts."""
    if ep < 1 or dp < 1 or dp % ep:
        raise ValueError(f"need dp ({dp}) to be a multiple of ep ({ep})")
    routed = params.routed_expert_params
    dense = params.total + params.mtp - routed
    per_gpu = dense / dp + routed / ep / (dp // ep)
    return {"ep": ep, "dp": dp, "params": round(per_gpu),
            "training_bytes": round(per_gpu * TRAINING_BYTES_PER_PARAM),
            "bf16_weight_bytes": round(per_gpu * 2)}


# --------------------------------------------------------------------------- report


def published_check(spec: ModelSpec, params: ParamCounts) -> list[dict[str, Any]]:
    """Compare the spec's published figures with the computed ones under the published convention."""
    ref = spec.reference
    if ref is None:
        return []
    computed = {
        "total": params.total,
        "total_with_mtp": params.total + params.mtp,
        "with_embedding_and_head": params.active,
        "without_input_embedding": params.active_non_embedding,
        "without_embedding_and_head": params.active_without_embedding_and_head,
    }
    out = []
    for label, fig in (("total_params", ref.total_params), ("active_params", ref.active_params)):
        if fig is None:
            continue
        ours = computed[fig.convention]
        rel = (ours - fig.value) / fig.value if fig.value else 0.0
        out.append({"figure": label, "published": fig.value, "convention": fig.convention, "computed": ours,
                    "rel_diff": rel, "tolerance": fig.rel_tolerance, "agrees": abs(rel) <= fig.rel_tolerance,
                    "source": fig.source})
    return out


def account(spec: ModelSpec, *, seq_len: int = 4096, conv: FlopConvention | None = None,
            ep: int = 1, dp: int = 1) -> dict[str, Any]:
    """The full report of one spec as a JSON-ready dict (keys per DESIGN.md section 4)."""
    graph = lower(spec)
    params = count_params(graph)
    conv = conv or FlopConvention()
    flops = count_flops(graph, seq_len, conv, params)
    moe_layers = [(stack, i) for stack, n in spec.stacks() for i in range(n) if spec.is_moe_layer(i)]
    out: dict[str, Any] = {
        "name": spec.name,
        "family": spec.family,
        "description": spec.description,
        "params": {
            "total": params.total,
            "active": params.active,
            "active_non_embedding": params.active_non_embedding,
            "active_without_embedding_and_head": params.active_without_embedding_and_head,
            "embedding": params.embedding,
            "lm_head": params.lm_head,
            "tied_embeddings": params.tied,
            "mtp": params.mtp,
            "mtp_active": params.mtp_active,
            "routed_experts": params.routed_expert_params,
            "expert_share": params.expert_share,
            "fine_grained_ratio": fine_grained_ratio(spec),
            "by_component": params.by_component,
            "active_by_component": params.active_by_component,
            "by_layer": params.by_layer,
        },
        "flops": {
            "seq_len": seq_len,
            "convention": conv.name,
            "switches": flops.applied,
            "forward_per_token": flops.forward_per_token,
            "train_per_token": flops.train_per_token,
            "mtp_forward_per_token": flops.mtp_forward_per_token,
            "by_component": flops.by_component,
            "formula": flops.formula,
            **({"note": flops.note} if flops.note else {}),
        },
        "memory": memory_figures(spec, params, ep=ep, dp=dp, seq_len=seq_len),
        "moe": _moe_summary(spec, moe_layers),
        "reference": published_check(spec, params),
    }
    return out


def _moe_summary(spec: ModelSpec, moe_layers: list[tuple[str, int]]) -> dict[str, Any]:
    if spec.moe is None:
        return {}
    ex, r = spec.moe.experts, spec.moe.router
    return {
        "routed": ex.num_routed,
        "active": getattr(r, "top_k", 1) if isinstance(r, TokenChoiceRouter) else None,
        "router": r.kind,
        "shared": ex.num_shared,
        "expert_hidden_dim": ex.hidden_dim,
        "moe_layers": len(moe_layers),
        "dense_layers": sum(n for _, n in spec.stacks()) - len(moe_layers),
    }
