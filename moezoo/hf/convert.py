"""config.json <-> spec, driven by the key tables in `moezoo.hf.tables`.

Import: every entry of the model_type's table reads its keys into a spec mapping; keys the table does not
know are reported; the mapping is validated as a ModelSpec. Export: every entry writes its keys from the
spec; then the written config is imported again and compared with the spec:

* an *architectural* difference means the model_type cannot express the spec (an error, nothing written);
* other differences (name, description, reference, training-only settings such as balance-loss weights,
  and equivalent spellings such as `head_dim` left implicit) go into one `moezoo` key of the config, which
  import-hf reads back, so export then import gives back an equal spec. transformers ignores that key.
"""

from __future__ import annotations

import copy
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moezoo.hf.tables import NOT_YET, TABLES, ImportCtx, Table, all_entries, indices_of, spec_get

EXTRAS_KEY = "moezoo"

# Spec paths that are not architecture: they may differ between a spec and what its config.json reads back as.
NON_ARCHITECTURE = (
    ("name",), ("family",), ("description",), ("reference",),
    ("moe", "balance"), ("moe", "router", "noise"), ("moe", "router", "float32"),
    ("moe", "experts", "reference_dense_dim"), ("mtp", "loss_weight"),
)


class HFError(Exception):
    """Import or export failed; `messages` are user-facing lines (without the file prefix)."""

    def __init__(self, messages: list[str], warnings: list[str] | None = None):
        self.messages = messages
        self.warnings = warnings or []
        super().__init__("; ".join(messages))


@dataclass
class ImportResult:
    model_type: str
    raw: dict  # the spec mapping (validated)
    warnings: list[str]
    sources: dict[tuple, list[str]] = field(default_factory=dict)


@dataclass
class ExportResult:
    model_type: str
    config: dict
    warnings: list[str]


# --------------------------------------------------------------------------- reading config.json


def read_config(path: Path) -> tuple[dict, str]:
    """The parsed config.json at `path` (a file, or a directory holding config.json) and a name hint."""
    path = Path(path)
    if path.is_dir():
        directory, path = path, path / "config.json"
    else:
        directory = path.parent
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise HFError([f"no such file: {path}"]) from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise HFError([f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"]) from None
    if not stat.S_ISREG(mode):
        raise HFError([f"{path} is not a regular file"])
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise HFError([f"file is larger than {MAX_CONFIG_BYTES} bytes; a config.json is a few KB"])
        data = json.loads(raw.decode("utf-8"), parse_int=_bounded_int)
    except (OSError, UnicodeDecodeError) as exc:
        raise HFError([f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"]) from None
    except json.JSONDecodeError as exc:
        raise HFError([f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    except _HugeInt as exc:
        raise HFError([f"integer of {exc.args[0]} digits; at most {MAX_INT_DIGITS} are read"]) from None
    except RecursionError:
        raise HFError([f"JSON nested deeper than {MAX_DEPTH} levels; not a config.json"]) from None
    if not isinstance(data, dict):
        raise HFError(["config.json must hold a JSON object"])
    if _depth(data) > MAX_DEPTH:
        raise HFError([f"JSON nested deeper than {MAX_DEPTH} levels; not a config.json"])
    return data, directory.resolve().name


# Input limits (docs/limits.md)
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_INT_DIGITS = 30
MAX_LAYERS = 4096  # the spec's bound on num_layers / num_encoder_layers
LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "num_decoder_layers", "n_layers", "num_encoder_layers")


class _HugeInt(Exception):
    pass


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _HugeInt(len(text.lstrip("-")))
    return int(text)


def _depth(node: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return max((_depth(c, level + 1) for c in children), default=level)


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def snake_name(text: str) -> str | None:
    """A spec name (^[a-z][a-z0-9_]{0,63}$) from free text, or None if nothing usable is left."""
    text = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    text = re.sub(r"_+", "_", text)
    if not text:
        return None
    if not text[0].isalpha():
        text = "m_" + text
    return text[:64].rstrip("_")


def spec_name(hf: dict, dir_name: str | None) -> str:
    """The directory name, else the last part of `_name_or_path`, else the model_type; snake_case."""
    candidates = [dir_name or ""]
    name_or_path = hf.get("_name_or_path")
    if isinstance(name_or_path, str) and name_or_path:
        candidates.append(name_or_path.rstrip("/").split("/")[-1])
    candidates.append(str(hf.get("model_type", "model")))
    for text in candidates:
        name = snake_name(text)
        if name and name not in ("config", "tmp"):
            return name
    return "model"


def _table(model_type: Any) -> Table:
    if not isinstance(model_type, str) or not model_type:
        raise HFError(["missing key 'model_type': cannot tell which architecture this config describes"])
    if model_type in NOT_YET:
        raise HFError([(f"model_type '{model_type}' is not supported yet: {NOT_YET[model_type]}. moezoo "
                        f"import-hf supports: {', '.join(sorted(TABLES))}")])
    if model_type not in TABLES:
        raise HFError([f"unknown model_type '{model_type}'; moezoo import-hf supports: {', '.join(sorted(TABLES))}"])
    return TABLES[model_type]


# --------------------------------------------------------------------------- import


def _flat_keys(hf: dict, subconfigs: tuple[str, ...]) -> list[str]:
    out = []
    for key, value in hf.items():
        if key in subconfigs and isinstance(value, dict):
            out.extend(f"{key}.{inner}" for inner in value)
        else:
            out.append(key)
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "kind" not in value:
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def map_config(hf: dict, *, name_hint: str | None = None, extras: bool = True) -> tuple[dict, ImportCtx, str]:
    """config.json mapping -> (spec mapping, import context, model_type); not validated yet."""
    table = _table(hf.get("model_type"))
    ctx = ImportCtx(hf, table.subconfigs)
    ctx.seen.update(("model_type", "architectures"))  # read here: which table, and a consistency check
    for key in LAYER_COUNT_KEYS:  # checked before any entry loops over the layers
        for node in [hf] + [hf[k] for k in table.subconfigs if isinstance(hf.get(k), dict)]:
            n = node.get(key)
            if key in node and not (isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_LAYERS):
                ctx.error(f"'{key}': must be an integer from 1 to {MAX_LAYERS} (got {_short(n)})")
    if ctx.errors:
        return {}, ctx, table.model_type
    for entry in all_entries(table):
        before = set(ctx.seen)
        try:
            entry.do_load(ctx)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError, OverflowError,
                MemoryError, RecursionError) as exc:  # a value of the wrong type or size for this entry
            keys = sorted(ctx.seen - before) or sorted(getattr(entry, "keys", ()) or ())
            what = ", ".join(f"'{k}'" for k in keys) or "a key"
            values = "; ".join(f"{k} = {_short(ctx.raw(k))}" for k in keys[:3])
            ctx.error(f"cannot read {what}: unexpected value ({values}) [{type(exc).__name__}]")
            return {}, ctx, table.model_type
        for path in ("num_layers", "num_encoder_layers"):  # later entries loop over the layers: bound them first
            n = ctx.spec.get(path)
            if path in ctx.spec and not (isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_LAYERS):
                keys = ", ".join(f"'{k}'" for k in ctx.sources.get((path,), [path]))
                ctx.error(f"{keys}: must be an integer from 1 to {MAX_LAYERS} (got {_short(n)})")
                return {}, ctx, table.model_type
    known = table.known_keys() | {e.hf for e in all_entries(table) if hasattr(e, "hf")} | {EXTRAS_KEY}
    for key in _flat_keys(hf, table.subconfigs):
        if key not in ctx.seen and key not in known:
            ctx.warn(f"unknown key '{key}' ignored: not in moezoo's {table.model_type} table; check that it does not "
                     "change the architecture")
    if ctx.errors:
        return {}, ctx, table.model_type
    arch = hf.get("architectures")
    if isinstance(arch, list) and arch and arch[0] != table.architecture:
        ctx.warn(f"architectures names {arch[0]}; moezoo describes the causal LM ({table.architecture})")

    spec = ctx.spec
    n_moe = len(indices_of(spec.get("moe", {}).get("layers"), spec.get("num_layers") or 0))
    experts = spec.get("moe", {}).get("experts", {})
    router = spec.get("moe", {}).get("router", {})
    head = {
        "name": spec_name(hf, name_hint),
        "family": table.family,
        "description": (f"Imported from a Hugging Face config.json (model_type {table.model_type}): "
                        + (f"{spec.get('num_encoder_layers')} encoder + {spec.get('num_layers')} decoder layers, "
                           f"{n_moe} MoE per stack" if table.encoder_decoder else
                           f"{spec.get('num_layers')} layers, {n_moe} MoE")
                        + f", top-{router.get('top_k')} of "
                        f"{experts.get('num_routed')} experts"
                        + (f" + {experts['num_shared']} shared" if experts.get("num_shared") else "") + "."),
    }
    reference: dict[str, Any] = {}
    name_or_path = hf.get("_name_or_path")
    if isinstance(name_or_path, str) and re.fullmatch(r"[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+", name_or_path):
        reference["hf_repo"] = name_or_path
    if not table.custom_code:
        reference["hf_model_type"] = table.model_type
    raw = {**head, **spec}
    if reference:
        raw["reference"] = reference
    if extras and isinstance(hf.get(EXTRAS_KEY), dict):
        raw = _merge(raw, hf[EXTRAS_KEY])
    elif extras and EXTRAS_KEY in hf:
        ctx.warn(f"ignored key '{EXTRAS_KEY}' (not a mapping)")
    return raw, ctx, table.model_type


def import_config(hf: dict, *, name_hint: str | None = None) -> ImportResult:
    """Validate the mapped config as a ModelSpec; raises HFError with every problem found."""
    from moezoo.spec.diagnostics import SpecError
    from moezoo.spec.loader import validate_mapping

    raw, ctx, model_type = map_config(hf, name_hint=name_hint)
    if ctx.errors:
        raise HFError(ctx.errors, ctx.warnings)
    try:
        _, warns = validate_mapping(raw)
    except SpecError as exc:
        raise HFError([f"the imported spec is invalid: {d.dotted}: {d.message}" for d in exc.diagnostics],
                      ctx.warnings) from None
    return ImportResult(model_type, raw, ctx.warnings + [f"{w.dotted}: {w.message}" for w in warns], ctx.sources)


# --------------------------------------------------------------------------- export


def _norm_number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _norm_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm_number(v) for v in value]
    return value


def architecture(dump: dict, extra: tuple[tuple[str, ...], ...] = ()) -> dict:
    """The architectural content of a spec dump, with equivalent spellings made equal; `extra` names further
    paths the model_type's config.json cannot carry (Table.non_architecture)."""
    d = copy.deepcopy(dump)
    for path in NON_ARCHITECTURE + extra:
        node = d
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    n = d["num_layers"]
    att = d["attention"]
    if att["kind"] in ("mha", "gqa"):
        att["kind"] = "gqa"
        att["num_kv_heads"] = att.get("num_kv_heads") or att["num_heads"]
        att["head_dim"] = att.get("head_dim") or d["model_dim"] // att["num_heads"]
        for key in ("sliding_window", "chunked"):
            if att.get(key):
                att[key]["layers"] = indices_of(att[key]["layers"], n)
        rotary_full = att["head_dim"]
    else:
        rotary_full = att["qk_rope_head_dim"]
    pos = d["position"]
    if pos.get("kind") == "rope":
        pos["rotary_dim"] = pos.get("rotary_dim") or rotary_full
        if pos.get("nope_layers"):
            pos["nope_layers"] = indices_of(pos["nope_layers"], n)
    moe = d.get("moe")
    if moe:
        moe["layers"] = indices_of(moe["layers"], n)
        ex = moe["experts"]
        ex["shared_hidden_dim"] = (ex.get("shared_hidden_dim") or ex["hidden_dim"]) if ex.get("num_shared") else None
    return d


def _diff(a: Any, b: Any, path: tuple = ()) -> list[tuple[tuple, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict) and a.get("kind") == b.get("kind"):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            out += _diff(a.get(key), b.get(key), path + (key,))
        return out
    return [] if _norm_number(a) == _norm_number(b) else [(path, a, b)]


def _nest(items: list[tuple[tuple, Any]]) -> dict:
    out: dict = {}
    for path, value in items:
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def export_spec(spec: Any, model_type: str | None = None) -> ExportResult:
    """ModelSpec -> config.json mapping for `model_type` (default: reference.hf_model_type)."""
    from moezoo.spec.loader import validate_mapping

    if model_type is None:
        model_type = spec.reference.hf_model_type if spec.reference else None
        if model_type is None:
            raise HFError(["the spec has no reference.hf_model_type; pass --model-type"])
    table = _table(model_type)
    if spec.is_encoder_decoder != table.encoder_decoder:
        kind = ("decoder_only", "encoder_decoder")
        article = "an" if spec.is_encoder_decoder else "a"
        message = (f"{article} {kind[spec.is_encoder_decoder]} spec cannot be a {model_type} config ({model_type} "
                   f"is {kind[table.encoder_decoder]})")
        raise HFError([message])
    notes: list[str] = []
    hf: dict[str, Any] = {"architectures": [table.architecture], "model_type": table.model_type}
    for entry in all_entries(table):
        entry.do_dump(spec, hf, notes)

    want = spec.model_dump(mode="json")
    back, ctx, _ = map_config(hf, extras=False)
    if ctx.errors:
        raise HFError([f"{model_type} cannot express this spec: {e}" for e in ctx.errors])
    problems = [f"{'.'.join(map(str, p))}: {json.dumps(a)} cannot be expressed in a {model_type} config.json "
                f"(it reads back as {json.dumps(b)})"
                for p, a, b in _diff(architecture(want, table.non_architecture),
                                     architecture(_validated(back, want), table.non_architecture))]
    if problems:
        raise HFError(problems)
    extras = [(p, a) for p, a, _ in _diff(want, _validated(back, want)) if p != ("name",)]
    hf[EXTRAS_KEY] = _nest([(("name",), spec.name)] + extras)  # the name always: a directory name must not win
    # The promise: importing what we write gives back the spec, exactly.
    final, _, _ = map_config(hf, name_hint="not_the_name")
    spec_back, _ = validate_mapping(final)
    if spec_back.model_dump(mode="json") != want:
        bad = [".".join(map(str, p)) for p, _, _ in _diff(want, spec_back.model_dump(mode="json"))]
        raise HFError([f"internal error: export-hf does not round-trip ({', '.join(bad)})"])
    return ExportResult(table.model_type, hf, notes)


def _validated(raw: dict, like: dict) -> dict:
    """Dump of the validated mapping (defaults filled in, as in `like`); raises HFError if invalid."""
    from moezoo.spec.diagnostics import SpecError
    from moezoo.spec.loader import validate_mapping

    try:
        spec, _ = validate_mapping(raw)
    except SpecError as exc:
        raise HFError([f"the exported config does not describe a valid spec: {d.dotted}: {d.message}"
                       for d in exc.diagnostics]) from None
    return spec.model_dump(mode="json")


def config_json(config: dict) -> str:
    """JSON text as transformers writes it: 2-space indent, sorted keys; the moezoo block last."""
    main = {k: config[k] for k in sorted(config) if k != EXTRAS_KEY}
    if EXTRAS_KEY in config:
        main[EXTRAS_KEY] = config[EXTRAS_KEY]
    return json.dumps(main, indent=2) + "\n"


__all__ = [
    "EXTRAS_KEY",
    "ExportResult",
    "HFError",
    "ImportResult",
    "architecture",
    "config_json",
    "export_spec",
    "import_config",
    "map_config",
    "read_config",
    "spec_get",
]
