"""Build: validated spec -> {model.py, train.py, config.json, report.json, report.md} in OUTDIR/<name>/.

Deterministic (same spec, same bytes: no timestamps, no absolute paths, a pinned formatter) and atomic
(files are written to a temporary sibling directory that is renamed into place, so a failed build
leaves the previous output untouched).
"""

from __future__ import annotations

import ctypes
import difflib
import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from pydantic import ValidationError

from moezoo.accounting import account
from moezoo.codegen.context import build_context, unsupported
from moezoo.codegen.tiny import tiny_spec
from moezoo.graph import lower
from moezoo.report import markdown_report
from moezoo.spec.loader import LoadedSpec
from moezoo.spec.schema import ModelSpec
from moezoo.zoo import data_dir, templates_dir



class BuildError(Exception):
    """A build that cannot proceed; the message is user-facing."""


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def format_python(source: str, filename: str = "model.py") -> str:
    """Format with the pinned ruff, ignoring any user configuration (--isolated)."""
    cmd = [sys.executable, "-m", "ruff", "format", "--isolated", "--line-length", "120", "--stdin-filename", filename, "-"]
    proc = subprocess.run(cmd, input=source, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"internal error: generated {filename} does not parse:\n{proc.stderr.strip()}")
    return proc.stdout


def spec_label(loaded: LoadedSpec) -> str:
    """How the banner names the spec: relative to the working directory, never absolute."""
    if loaded.path is None:
        return "<string>"
    path = loaded.path.resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        parent = path.parent.name
        return f"{parent}/{path.name}" if parent else path.name


@dataclass
class BuildResult:
    name: str
    files: dict[str, str]


def more_unsupported(spec: ModelSpec) -> list[str]:
    """Valid specs the templates cannot generate yet, beyond codegen.context.unsupported (checked here so the
    build stops with one message instead of writing a model.py that fails when run)."""
    out = []
    if spec.is_encoder_decoder and spec.moe is None:
        out.append("encoder_decoder without a moe block (a dense T5)")
    return out


def render(loaded: LoadedSpec, *, tiny: bool = False) -> BuildResult:
    if tiny:
        try:
            spec: ModelSpec = tiny_spec(loaded.spec)
        except ValidationError as exc:  # a rule of tiny.py that this spec breaks: a moezoo bug, said in one line
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BuildError(f"--tiny cannot shrink this spec: {where}: {first['msg']}") from None
    else:
        spec = loaded.spec
    problems = [p.feature for p in unsupported(spec)] + more_unsupported(spec)
    if problems:
        raise BuildError(f"not supported yet: {problems[0]}")
    graph = lower(spec)
    label = spec_label(loaded)
    ctx = build_context(spec, graph, spec_label=label + (" --tiny" if tiny else ""), spec_sha256=loaded.sha256)
    env = environment()
    files: dict[str, str] = {}
    files["model.py"] = format_python(env.get_template("model.py.j2").render(c=ctx), "model.py")
    if ctx["hf"] is not None:  # checkpoint conversion (Model.from_hf / save_hf) and the shared safetensors I/O
        files["hf.py"] = format_python(env.get_template("hf.py.j2").render(c=ctx), "hf.py")
    train_template = templates_dir() / "train.py.j2"
    if train_template.exists():
        files["train.py"] = format_python(env.get_template("train.py.j2").render(c=ctx), "train.py")
        corpus = data_dir() / "corpus.txt"
        if corpus.exists():  # the trainer's default dataset travels with the build
            files["corpus.txt"] = corpus.read_text(encoding="utf-8")
    files["config.json"] = json.dumps(spec.model_dump(mode="json"), indent=2) + "\n"
    rep = account(spec)
    files["report.json"] = json.dumps(rep, indent=2) + "\n"
    files["report.md"] = markdown_report(rep, spec)
    return BuildResult(spec.name, files)


def target_dir(outdir: Path, name: str) -> Path:
    target = (outdir / name).resolve()
    if target.parent != outdir.resolve():
        raise BuildError(f"output path {target} escapes {outdir}")
    return target


def differences(result: BuildResult, outdir: Path) -> list[str]:
    """Unified diffs between what a build would write and what is on disk (empty: up to date)."""
    target = target_dir(outdir, result.name)
    out = []
    for fname, text in result.files.items():
        path = target / fname
        old = path.read_text() if path.exists() else ""
        if old != text:
            diff = difflib.unified_diff(old.splitlines(True), text.splitlines(True), f"{path} (on disk)",
                                        f"{path} (generated)", n=1)
            out.append("".join(list(diff)[:40]) or f"{path}: differs\n")
    if target.exists():
        for extra in sorted(p.name for p in target.iterdir() if p.name not in result.files):
            out.append(f"{target / extra}: not produced by the build\n")
    return out


_RENAME_EXCHANGE = 2  # linux/fs.h
_libc: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the platform cannot."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    at_fdcwd = -100
    if _libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # old kernel, or a filesystem without it
        return False
    raise OSError(err, os.strerror(err), str(b))


TMP_SUFFIX = ".moezoo-tmp"


def _lock(path: Path) -> int:
    """Hold an advisory lock on a staging directory while this process uses it (released when it dies)."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def sweep(outdir: Path, name: str, min_age_s: float = 10.0) -> None:
    """Remove temporaries of earlier builds of `name` that were killed (unlocked, older than min_age_s)."""
    try:
        entries = list(outdir.glob(f".{name}.*{TMP_SUFFIX}"))
    except OSError:
        return
    now = time.time()
    for path in entries:
        try:
            if path.is_symlink() or not path.is_dir() or now - path.lstat().st_mtime < min_age_s:
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live build holds it
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)


def _check_outdir(outdir: Path) -> list[Path]:
    """Create OUTDIR (and missing parents); returns the directories created, for removal on failure."""
    created: list[Path] = []
    probe = outdir
    while not os.path.lexists(probe):
        created.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    if os.path.lexists(probe) and not probe.is_dir():
        raise BuildError(f"cannot create output directory {outdir}: {probe} is not a directory")
    for path in reversed(created):
        path.mkdir()
    return created


def write_all(results: list[BuildResult], outdir: Path) -> list[Path]:
    """Write every result to OUTDIR/<name>/, all or nothing, each directory replaced in one step.

    Each build is staged in a hidden sibling directory and swapped with the old output by renameat2's
    RENAME_EXCHANGE, so at every instant OUTDIR/<name> is the complete old output or the complete new one (where
    the platform lacks the exchange, the old directory is moved aside and the new one renamed in: a short window).
    If any step fails, the directories already swapped are swapped back and every temporary is removed.
    """
    outdir = Path(outdir)
    targets = []
    for res in results:
        target = outdir / res.name
        if os.path.islink(target):
            raise BuildError(f"{target} is a symbolic link; refusing to replace it (remove it, or choose another -o)")
        if os.path.lexists(target) and not target.is_dir():
            raise BuildError(f"{target} exists and is not a directory; remove it, or choose another -o")
        if outdir.is_dir():
            target_dir(outdir, res.name)
        targets.append(target)
    created = _check_outdir(outdir)
    staged: list[tuple[Path, int]] = []
    done: list[tuple[Path, Path, bool]] = []  # (target, temporary, swapped): what to undo on failure
    try:
        for res, target in zip(results, targets):
            sweep(outdir, res.name)
            tmp = Path(tempfile.mkdtemp(prefix=f".{res.name}.", suffix=TMP_SUFFIX, dir=outdir))
            staged.append((tmp, _lock(tmp)))
            os.chmod(tmp, 0o755)
            for fname, text in res.files.items():
                (tmp / fname).write_text(text, encoding="utf-8")
        for (tmp, _), target in zip(staged, targets):
            if os.path.lexists(target):
                if os.path.islink(target) or not target.is_dir():
                    raise BuildError(f"{target} changed while building (now not a directory); nothing written")
                if _exchange(tmp, target):
                    done.append((target, tmp, True))  # tmp now holds the old output
                    continue
                old = tmp.with_name(tmp.name.removesuffix(TMP_SUFFIX) + ".old" + TMP_SUFFIX)
                os.rename(target, old)
                try:
                    os.rename(tmp, target)
                except BaseException:
                    os.rename(old, target)
                    raise
                done.append((target, old, True))
            else:
                os.rename(tmp, target)
                done.append((target, tmp, False))
    except BaseException:
        for target, tmp, swapped in reversed(done):  # undo, newest first
            try:
                if swapped and not _exchange(tmp, target):
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(tmp, target)
                elif not swapped:
                    os.rename(target, tmp)
            except OSError:
                pass
        for tmp, fd in staged:
            shutil.rmtree(tmp, ignore_errors=True)
            os.close(fd)
        for target, tmp, _ in done:
            shutil.rmtree(tmp, ignore_errors=True)
        for path in created:
            try:
                path.rmdir()
            except OSError:
                pass
        raise
    for target, tmp, swapped in done:
        if swapped:
            shutil.rmtree(tmp, ignore_errors=True)  # the previous output
    for _, fd in staged:
        os.close(fd)
    return targets


def write(result: BuildResult, outdir: Path) -> Path:
    """Write one result atomically (see write_all)."""
    return write_all([result], outdir)[0]
