"""Build: validated spec -> {model.py, train.py, config.json, report.json, report.md} in OUTDIR/<name>/.

Deterministic (same spec, same bytes: no timestamps, no absolute paths, a pinned formatter) and atomic
(files are written to a temporary sibling directory that is renamed into place, so a failed build
leaves the previous output untouched).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

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


def render(loaded: LoadedSpec, *, tiny: bool = False) -> BuildResult:
    spec: ModelSpec = tiny_spec(loaded.spec) if tiny else loaded.spec
    problems = unsupported(spec)
    if problems:
        raise BuildError(f"not supported yet: {problems[0].feature}")
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


def write(result: BuildResult, outdir: Path) -> Path:
    """Write atomically: a temporary sibling directory renamed over the old output."""
    outdir.mkdir(parents=True, exist_ok=True)
    target = target_dir(outdir, result.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{result.name}.", dir=outdir))
    os.chmod(tmp, 0o755)
    try:
        for fname, text in result.files.items():
            (tmp / fname).write_text(text)
        if target.exists():
            old = tmp.with_name(tmp.name + ".old")
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)  # put the previous output back
                raise
            shutil.rmtree(old)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
