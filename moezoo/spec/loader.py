"""YAML text -> validated ModelSpec, with every problem reported at its file, line and column.

Stages: read bytes (size and encoding checks) -> `yaml.compose` with the safe loader (node tree with
marks; aliases rejected, so no YAML bomb can expand) -> plain Python plus a source map -> `extends:`
resolved by deep merge -> `--set` overrides applied -> Pydantic validation -> errors mapped back to
source positions, with "did you mean" hints for misspelt keys and kinds.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from moezoo.spec.checks import warnings as spec_warnings
from moezoo.spec.diagnostics import Diagnostic, Location, SpecCheckFailed, SpecError
from moezoo.spec.schema import ModelSpec

# Input limits (docs/limits.md): a spec is a few KB with a few hundred nodes; these bounds keep time and memory
# small whatever the input is.
MAX_FILE_BYTES = 1 << 20  # a spec is a few KB; 1 MiB is generous
MAX_NODES = 100_000
MAX_EXTENDS_DEPTH = 16
MAX_OVERRIDES = 256  # --set options per command
MAX_OVERRIDE_CHARS = 4096  # length of one --set PATH=VALUE
MAX_INT_DIGITS = 4000  # longer integers are refused unread (Python converts at most 4300 digits)

Path_ = tuple  # a spec path: tuple of str keys and int indices


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of the merged spec came from."""

    values: dict[Path_, Location] = field(default_factory=dict)
    keys: dict[Path_, Location] = field(default_factory=dict)

    def update(self, other: "SourceMap") -> None:
        self.values.update(other.values)
        self.keys.update(other.keys)

    def drop_below(self, path: Path_) -> None:
        for table in (self.values, self.keys):
            for p in [p for p in table if p[: len(path)] == path and len(p) > len(path)]:
                del table[p]

    def nearest(self, path: Path_, *, key: bool = False) -> Location | None:
        """Location of `path` (its key if `key`), else of its closest ancestor's key (the line naming it)."""
        p = tuple(path)
        tables = (self.keys, self.values) if key else (self.values,)
        while True:
            for table in tables:
                if p in table:
                    return table[p]
            if not p:
                return None
            p = p[:-1]
            tables = (self.keys, self.values)


@dataclass
class LoadedSpec:
    """A validated spec plus what the later stages need to know about its source."""

    spec: ModelSpec
    warnings: list[Diagnostic]
    raw: dict
    source: SourceMap
    path: Path | None
    sha256: str  # of the spec file's bytes and of every file it extends, in order, and the overrides


# --------------------------------------------------------------------------- YAML -> python + positions


def _loc(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


class _Reader:
    def __init__(self, file: str):
        self.file = file
        self.errors: list[Diagnostic] = []
        self.source = SourceMap()
        self._seen: set[int] = set()
        self._count = 0
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, msg: str, mark: Any, path: Path_ = ()) -> None:
        self.errors.append(Diagnostic(msg, path, location=_loc(self.file, mark)))

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise _TooBig(node)
        if id(node) in self._seen:
            self.error("YAML anchors and aliases are not supported in specs; write the value out", node.start_mark, path)
            return None
        self._seen.add(id(node))
        self.source.values[path] = _loc(self.file, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    self.error("keys must be plain names (no merge keys or complex keys)", key_node.start_mark, path)
                    continue
                key = key_node.value
                if key_node.tag != "tag:yaml.org,2002:str":
                    key = str(self._constructor.construct_object(key_node))
                if key in out:
                    first = self.source.keys.get(path + (key,))
                    where = f" (first at line {first.line})" if first else ""
                    self.error(f"duplicate key {_short(key)}{where}", key_node.start_mark, path + (key,))
                    continue
                self.source.keys[path + (key,)] = _loc(self.file, key_node.start_mark)
                out[key] = self.convert(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_DIGITS:
            self.error(f"integer of {len(node.value)} characters; at most {MAX_INT_DIGITS} digits are read (and no "
                       "field takes a number above 2**50)", node.start_mark, path)
            return None
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.error(f"cannot read value: {exc.problem or exc.context}", node.start_mark, path)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError) as exc:
            self.error(f"cannot read value: {exc}", node.start_mark, path)
        return None


class _TooBig(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


def _os_reason(exc: BaseException) -> str:
    """The reason of an OSError without the path (the caller prints it first)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    if isinstance(exc, ValueError) and "null" in str(exc):
        return "the path contains a NUL character"
    if isinstance(exc, RuntimeError) and "loop" in str(exc).lower():
        return "symbolic link loop"
    return str(exc)


def _byte_location(label: str, data: bytes, offset: int) -> Location:
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return Location(label, data.count(b"\n", 0, offset) + 1, column)


def _read_text(path: Path, label: str) -> str:
    def fail(msg: str) -> SpecError:
        return SpecError([Diagnostic(msg, location=Location(label, 0, 0))])  # about the file, not a line in it

    try:
        mode = path.stat().st_mode  # follows symlinks; never opens, so a FIFO or device cannot block here
    except FileNotFoundError:
        raise fail("no such file") from None
    except (OSError, ValueError, RuntimeError) as exc:  # ELOOP, ENAMETOOLONG, EACCES; NUL in the name
        raise fail(f"cannot read file: {_os_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        raise fail("is a directory, not a spec file")
    if not stat.S_ISREG(mode):
        raise fail("not a regular file (a FIFO, socket or device); a spec is a YAML file")
    try:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags)  # non-blocking: a file swapped for a FIFO after the check does not hang
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise fail("not a regular file (a FIFO, socket or device); a spec is a YAML file")
            data = fh.read(MAX_FILE_BYTES + 1)  # bounded even where st_size lies (/proc files)
    except OSError as exc:
        raise fail(f"cannot read file: {_os_reason(exc)}") from None
    if len(data) > MAX_FILE_BYTES:
        raise fail(f"file is larger than {MAX_FILE_BYTES} bytes; a spec is at most {MAX_FILE_BYTES} bytes")
    if b"\x00" in data:
        where = _byte_location(label, data, data.index(b"\x00"))
        raise SpecError([Diagnostic("not a text file (contains NUL bytes)", location=where)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _byte_location(label, data, exc.start)
        raise SpecError([Diagnostic(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", location=where)]) from None


class _SpecLoader(yaml.SafeLoader):
    """The safe loader, noting every alias event: aliases are rejected where they are written."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.aliases: list[yaml.AliasEvent] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases.append(self.peek_event())
        return super().compose_node(parent, index)


def _text_location(label: str, text: str, index: int) -> Location:
    return Location(label, text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1)


def parse_yaml(text: str, label: str) -> tuple[dict, SourceMap]:
    """Safe-load one YAML document into plain Python, keeping the position of every value and key."""
    loader = None
    try:
        loader = _SpecLoader(text)  # checks every character: may raise ReaderError
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _loc(label, mark) if mark is not None else Location(label, 1, 1)
        if exc.context == "expected a single document in the stream":
            msg = "a spec file holds one YAML document, but another one starts here"
        else:
            msg = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
            ctx = exc.context_mark
            if exc.problem and exc.context and ctx is not None and mark is not None and ctx.line != mark.line:
                msg += f" ({exc.context} at line {ctx.line + 1})"
        raise SpecError([Diagnostic(msg, location=loc)]) from None
    except yaml.reader.ReaderError as exc:
        where = _text_location(label, text, exc.position)
        msg = f"invalid YAML: special character U+{exc.character:04X} is not allowed"
        raise SpecError([Diagnostic(msg, location=where)]) from None
    except RecursionError:
        raise SpecError([Diagnostic("nesting too deep; not a spec", location=Location(label, 1, 1))]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(f"invalid YAML: {exc}", location=Location(label, 1, 1))]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise SpecError([Diagnostic("file is empty; a spec is a mapping of fields", location=Location(label, 1, 1))])
    if not isinstance(root, yaml.MappingNode):
        kind = "list" if isinstance(root, yaml.SequenceNode) else "single value"
        raise SpecError([Diagnostic(f"a spec must be a mapping of fields, got a {kind}",
                                    location=_loc(label, root.start_mark))])
    if loader.aliases:  # never expanded (composed nodes are shared), but rejected: a bomb is one alias away
        first, count = loader.aliases[0], len(loader.aliases)
        more = f" ({count} aliases in this file)" if count > 1 else ""
        raise SpecError([Diagnostic(f"YAML alias '*{first.anchor}' is not supported in specs; write the value "
                                    f"out{more}", location=_loc(label, first.start_mark))])
    reader = _Reader(label)
    try:
        data = reader.convert(root, ())
    except _TooBig as big:
        raise SpecError([Diagnostic(f"more than {MAX_NODES} YAML nodes; not a spec",
                                    location=_loc(label, big.node.start_mark))]) from None
    except RecursionError:
        raise SpecError([Diagnostic("nesting too deep; not a spec", location=Location(label, 1, 1))]) from None
    if reader.errors:
        raise SpecError(reader.errors)
    return data, reader.source


# --------------------------------------------------------------------------- extends and overrides


def _deep_merge(base: dict, over: dict, base_src: SourceMap, over_src: SourceMap, path: Path_ = ()) -> dict:
    out = dict(base)
    for key, value in over.items():
        here = path + (key,)
        old = out.get(key)
        same_kind = not (isinstance(old, dict) and isinstance(value, dict) and "kind" in value
                         and old.get("kind") != value["kind"])
        if isinstance(old, dict) and isinstance(value, dict) and same_kind:
            out[key] = _deep_merge(old, value, base_src, over_src, here)
        else:
            base_src.drop_below(here)
            out[key] = value
    return out


def _load_with_extends(
    path: Path, label: str, chain: list[tuple[Path, str]], hasher: Any
) -> tuple[dict, SourceMap]:
    """`chain` holds (resolved path, label) of the files that extend this one, outermost first."""
    text = _read_text(path, label)
    hasher.update(text.encode())
    data, source = parse_yaml(text, label)
    parent = data.pop("extends", None)
    if parent is None:
        return data, source
    where = source.values.get(("extends",))

    def fail(msg: str) -> SpecError:
        return SpecError([Diagnostic(msg, ("extends",), location=where)])

    if not isinstance(parent, str) or not parent.strip():
        raise fail(f"must be the path of another spec file (got {_short(parent)})")
    if "\x00" in parent:
        raise fail("the path contains a NUL character")
    try:
        parent_path = (path.parent / parent).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise fail(f"extends '{parent}': {_os_reason(exc)}") from None
    parent_label = os.path.normpath(Path(label).parent / parent)
    chain = chain + [(path.resolve(), label)]
    if parent_path in [p for p, _ in chain]:
        raise fail(f"extends cycle: {' -> '.join([name for _, name in chain] + [parent_label])}")
    if len(chain) > MAX_EXTENDS_DEPTH:
        raise fail(f"extends chain deeper than {MAX_EXTENDS_DEPTH}")
    try:
        mode = parent_path.stat().st_mode
    except FileNotFoundError:
        raise fail(f"extends '{parent}': no such file") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise fail(f"extends '{parent}': {_os_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        raise fail(f"extends '{parent}': is a directory, not a spec file")
    if not stat.S_ISREG(mode):
        raise fail(f"extends '{parent}': not a regular file (a FIFO, socket or device)")
    base, base_src = _load_with_extends(parent_path, parent_label, chain, hasher)
    merged = _deep_merge(base, data, base_src, source)
    base_src.update(source)
    return merged, base_src


def parse_override(text: str) -> tuple[Path_, Any]:
    """'moe.router.top_k=4' -> (('moe', 'router', 'top_k'), 4). The value is read as a YAML scalar/flow."""
    def fail(msg: str) -> SpecError:
        return SpecError([Diagnostic(msg, location=Location("--set", 0, 0))])

    if len(text) > MAX_OVERRIDE_CHARS:
        raise fail(f"--set value of {len(text)} characters; at most {MAX_OVERRIDE_CHARS}")
    if "=" not in text:
        raise fail(f"--set expects PATH=VALUE, got '{text}'")
    key, _, value = text.partition("=")
    parts = tuple(key.strip().split("."))
    if not all(p.isidentifier() for p in parts) or len(parts) > 16:
        raise fail(f"--set path '{key}' must be dotted field names")
    if not value.strip():
        return parts, None
    try:  # the value is read like a spec file: safe loader, no aliases, bounded integers, located errors
        data, _ = parse_yaml(f"v: {value}", f"--set {text}")
        parsed = data.get("v")
    except SpecError as exc:
        first = exc.diagnostics[0].message
        if first.startswith("invalid YAML"):  # not YAML: take the text as a string, as before
            return parts, value
        raise fail(f"--set {key}: {first}") from None
    return parts, parsed


def apply_overrides(data: dict, source: SourceMap, overrides: Sequence[str]) -> dict:
    if len(overrides) > MAX_OVERRIDES:
        raise SpecError([Diagnostic(f"{len(overrides)} --set options; at most {MAX_OVERRIDES}",
                                    location=Location("--set", 0, 0))])
    for text in overrides:
        path, value = parse_override(text)
        loc = Location(f"--set {text}", 0, 0)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):  # absent or not a mapping: --set makes one
                child = {}
                node[part] = child
                source.drop_below(path[: i + 1])
                source.values[path[: i + 1]] = loc
            node = child
        node[path[-1]] = value
        source.drop_below(path)
        source.values[path] = loc
        source.keys[path] = loc
    return data


# --------------------------------------------------------------------------- pydantic errors -> diagnostics


def _unwrap(annotation: Any) -> list[type[BaseModel]]:
    """Model classes an annotation may hold (Optional / Annotated / Union / list unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType) or origin in (list, tuple):
        out = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _model_at(path: Path_, raw: Any) -> type[BaseModel] | list[type[BaseModel]] | None:
    """The schema class describing the mapping at `path` (a list of candidates if the kind is unknown)."""
    cls: Any = ModelSpec
    node = raw
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if not (isinstance(cls, type) and part in cls.model_fields):
            return None
        candidates = _unwrap(cls.model_fields[part].annotation)
        node = node.get(part) if isinstance(node, dict) else None
        if not candidates:
            return None
        if len(candidates) == 1:
            cls = candidates[0]
            continue
        kind = node.get("kind") if isinstance(node, dict) else None
        chosen = [c for c in candidates if kind in _kinds(c)]
        if len(chosen) != 1:
            return candidates
        cls = chosen[0]
    return cls


def _kinds(cls: type[BaseModel]) -> list[str]:
    f = cls.model_fields.get("kind")
    return list(typing.get_args(f.annotation)) if f is not None else []


def _closest(word: str, options: Sequence[str]) -> str | None:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return match[0] if match else None


def _suggest(word: str, options: Sequence[str]) -> str:
    match = _closest(word, options)
    return f" (did you mean '{match}'?)" if match else ""


def _short(value: Any) -> str:
    """A value as the spec's YAML spells it (true, false, null; strings quoted), shortened."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _data_path(loc: Sequence[Any], raw: Any) -> Path_:
    """Drop the discriminator tags pydantic inserts in `loc` (e.g. 'token_choice') to get a data path."""
    out: list[Any] = []
    node = raw
    loc = list(loc)
    i = 0
    while i < len(loc):
        part = loc[i]
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and node.get("kind") == part:
            pass  # the union tag
        elif i == len(loc) - 1:
            out.append(part)  # a missing key: keep it, it is the field's name
        else:
            node = None
            out.append(part)
        i += 1
    return tuple(out)


def _diagnostics_from_validation(exc: ValidationError, raw: dict, source: SourceMap) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    suggested: set[Path_] = set()  # fields named by a "did you mean": their "missing" would say it twice
    for err in exc.errors(include_url=False):
        kind, msg, loc = err["type"], err["msg"], err["loc"]
        ctx = err.get("ctx") or {}
        if isinstance(ctx.get("error"), SpecCheckFailed):
            for issue in ctx["error"].issues:
                out.append(Diagnostic(issue.message, issue.path, location=source.nearest(issue.path)))
            continue
        path = _data_path(loc, raw)
        if kind == "extra_forbidden":
            model = _model_at(path[:-1], raw)
            names: list[str] = []
            for m in model if isinstance(model, list) else [model] if model else []:
                names.extend(m.model_fields)
            match = _closest(str(path[-1]), names)
            if match:
                suggested.add(path[:-1] + (match,))
            text = f"unknown field {_short(str(path[-1]))}" + (f" (did you mean '{match}'?)" if match else "")
            out.append(Diagnostic(text, path, location=source.nearest(path, key=True)))
        elif kind == "missing":
            out.append(Diagnostic("missing required field", path, location=source.nearest(path[:-1], key=True)))
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            model = _model_at(path, raw)
            kinds: list[str] = []
            for m in model if isinstance(model, list) else [model] if model else []:
                kinds.extend(_kinds(m))
            if kind == "union_tag_not_found":
                text = f"missing 'kind' (one of: {', '.join(kinds)})"
                out.append(Diagnostic(text, path, location=source.nearest(path, key=True)))
            else:
                got = str(ctx.get("tag", ""))
                text = f"unknown kind {_short(got)} (expected one of: {', '.join(kinds)}){_suggest(got, kinds)}"
                out.append(Diagnostic(text, path + ("kind",), location=source.nearest(path + ("kind",))))
        else:
            text = msg.replace("Input should be", "should be").replace("Value error, ", "")
            if kind not in ("model_type", "dict_type") or not isinstance(err.get("input"), dict):
                text += f" (got {_short(err.get('input'))})"
            out.append(Diagnostic(text, path, location=source.nearest(path)))
    return [d for d in out if not (d.message == "missing required field" and d.path in suggested)]


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    def key(d: Diagnostic) -> tuple:
        loc = d.location
        return (loc.file, loc.line, loc.column) if loc else ("", 0, 0)

    return sorted(diags, key=key)


# --------------------------------------------------------------------------- public entry points


def validate_mapping(raw: dict, source: SourceMap | None = None) -> tuple[ModelSpec, list[Diagnostic]]:
    """Validate an already-parsed mapping; raises SpecError with located diagnostics."""
    source = source or SourceMap()
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_sorted(_diagnostics_from_validation(exc, raw, source))) from None
    found = [Diagnostic(w.message, w.path, "warning", source.nearest(w.path)) for w in spec_warnings(spec)]
    return spec, _sorted(found)


def load_spec(path: str | Path, overrides: Sequence[str] = (), *, label: str | None = None) -> LoadedSpec:
    """Load, merge, override and validate one spec file. Raises SpecError listing every problem."""
    path = Path(path)
    label = label or str(path)
    hasher = hashlib.sha256()
    raw, source = _load_with_extends(path, label, [], hasher)
    for text in overrides:
        hasher.update(b"\0--set " + text.encode())
    raw = apply_overrides(raw, source, overrides)
    spec, warns = validate_mapping(raw, source)
    return LoadedSpec(spec, warns, raw, source, path, hasher.hexdigest())


def load_spec_text(text: str, label: str = "<string>", overrides: Sequence[str] = ()) -> LoadedSpec:
    """Like load_spec, for text in memory (no `extends:`)."""
    data, source = parse_yaml(text, label)
    if "extends" in data:
        raise SpecError([Diagnostic("extends needs a spec file on disk", ("extends",),
                                    location=source.values.get(("extends",)))])
    raw = apply_overrides(data, source, overrides)
    spec, warns = validate_mapping(raw, source)
    digest = hashlib.sha256(text.encode())
    for o in overrides:
        digest.update(b"\0--set " + o.encode())
    return LoadedSpec(spec, warns, raw, source, None, digest.hexdigest())
