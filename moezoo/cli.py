"""The `moezoo` command line. Exit codes: 0 success, 1 invalid input, 2 usage error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from moezoo import __version__
from moezoo.spec import LoadedSpec, SpecError, load_spec
from moezoo.zoo import resolve_spec, zoo_specs


class LazyConsole:
    """A rich Console made on first use: rich costs about 0.1 s to import, and `report --json`, `build` or
    `--help` print nothing through it."""

    def __init__(self, **options) -> None:
        self.options, self.console = options, None

    def __getattr__(self, name: str):
        if self.console is None:
            from rich.console import Console

            self.console = Console(**self.options)
        return getattr(self.console, name)


def Table(*args, **kwargs):  # noqa: N802 - rich's Table, imported when a command draws one
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


err_console = LazyConsole(stderr=True, highlight=False, soft_wrap=True)
out_console = LazyConsole(highlight=False, soft_wrap=True)

SET_HELP = "Override a spec field, e.g. --set moe.router.top_k=4 (typed and validated like the file). Repeatable."


class InvalidInput(Exception):
    """Raised by a command after it has printed its diagnostics; main() turns it into exit code 1."""


def write_output(path: Path, text: str) -> None:
    """Write a file in one step (a temporary sibling renamed over it): a failure leaves the old file as it was."""
    import os
    import tempfile

    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory", param_hint="-o/--output")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".moezoo-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def print_diagnostics(diags) -> None:
    for d in diags:
        style = "bold red" if d.severity == "error" else "yellow"
        err_console.print(d.format(), style=style, markup=False)


def load_all(specs: tuple[str, ...], overrides: tuple[str, ...] = ()) -> list[LoadedSpec]:
    """Load every spec, printing all diagnostics; raises InvalidInput if any spec is invalid."""
    loaded, failed = [], False
    for arg in specs:
        try:
            item = load_spec(resolve_spec(arg), overrides, label=arg)
        except SpecError as exc:
            print_diagnostics(exc.diagnostics)
            failed = True
            continue
        print_diagnostics(item.warnings)
        loaded.append(item)
    if failed:
        raise InvalidInput()
    return loaded


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="moezoo")
def cli() -> None:
    """moezoo: write one YAML spec of a Mixture-of-Experts model; get its exact costs and runnable code.

    SPEC arguments are paths to YAML files, or names of specs in the bundled zoo (see `moezoo ls`).
    """


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
def validate(specs: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check specs: schema, cross-field rules and warnings. Errors go to stderr, compiler style."""
    for item in load_all(specs, overrides):
        out_console.print(f"ok: {item.path} ({item.spec.name})", markup=False)


def json_schema() -> dict:
    """The JSON Schema of a spec file (the Pydantic schema plus the loader's `extends` key)."""
    from moezoo.spec.schema import ModelSpec

    schema = ModelSpec.model_json_schema()
    schema["properties"] = {
        "extends": {
            "type": "string",
            "description": "Path of a spec this one extends, relative to this file; fields here are deep-merged "
            "over it (a mapping whose `kind` differs replaces the parent's).",
        },
        **schema["properties"],
    }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "moezoo-spec.schema.json", **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of spec files (used by editors via the specs' $schema modeline)."""
    text = json_schema_text()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)


@cli.command("ls")
def ls_cmd() -> None:
    """List the bundled zoo: name, family and a one-line description of each spec."""
    table = Table(title="moezoo zoo", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("family")
    table.add_column("description")
    for path in zoo_specs():
        try:
            spec = load_spec(path).spec
        except SpecError as exc:
            print_diagnostics(exc.diagnostics)
            raise InvalidInput() from None
        table.add_row(spec.name, spec.family, spec.description)
    out_console.print(table)


def _convention(name: str, causal, router, lm_head, input_embedding, mtp, recompute):
    from moezoo.accounting import convention

    switches = {k: v for k, v in dict(causal=causal, include_router=router, include_lm_head=lm_head,
                                      include_input_embedding=input_embedding, include_mtp=mtp,
                                      recompute=recompute).items() if v is not None}
    try:
        return convention(name, **switches)
    except ValueError as exc:  # a fixed-formula preset refuses a switch it cannot apply
        raise click.UsageError(str(exc)) from None


def flop_options(f):
    """The FLOP-convention options shared by report, table, diff and plot."""
    from moezoo.accounting import CONVENTION_HELP, PRESETS

    helptext = "; ".join(f"{k}: {v}" for k, v in CONVENTION_HELP.items())
    opts = [
        click.option("--seq-len", type=click.IntRange(1, 1 << 30), default=4096, show_default=True,
                     help="Sequence length S for the attention FLOPs."),
        click.option("--convention", type=click.Choice(list(PRESETS)), default="deepseek", show_default=True,
                     help=f"FLOP convention preset. {helptext}."),
        click.option("--causal/--no-causal", default=None, help="Halve attention for causal masking (preset default)."),
        click.option("--router/--no-router", "router", default=None, help="Count router matmuls."),
        click.option("--lm-head/--no-lm-head", "lm_head", default=None, help="Count the LM head matmul."),
        click.option("--input-embedding/--no-input-embedding", "input_embedding", default=None,
                     help="Charge the input embedding as a matmul (a common mistake; off by default)."),
        click.option("--mtp/--no-mtp", "mtp", default=None, help="Include the MTP modules in the FLOPs."),
        click.option("--recompute/--no-recompute", default=None,
                     help="Full activation recomputation: training = 4 x forward instead of 3."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _reports(specs, overrides, seq_len, conv, ep=1, dp=1):
    from moezoo.accounting import account

    items = load_all(specs, overrides)
    return items, [account(i.spec, seq_len=seq_len, conv=conv, ep=ep, dp=dp) for i in items]


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list when several specs are given).")
@click.option("--ep", type=click.IntRange(1), default=1, help="Expert-parallel degree for the per-GPU share.")
@click.option("--dp", type=click.IntRange(1), default=1, help="Data-parallel (FSDP) degree for the per-GPU share.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@flop_options
def report(specs, as_json, ep, dp, overrides, seq_len, convention, causal, router, lm_head, input_embedding, mtp,
           recompute):
    """Exact parameters, FLOPs per token and memory of each spec, with published figures compared."""
    conv = _convention(convention, causal, router, lm_head, input_embedding, mtp, recompute)
    if dp % ep:
        raise click.BadParameter(f"--dp ({dp}) must be a multiple of --ep ({ep})", param_hint="--dp")
    _, reps = _reports(specs, overrides, seq_len, conv, ep, dp)
    if as_json:
        click.echo(json.dumps(reps[0] if len(reps) == 1 else reps, indent=2))
        return
    from moezoo.report import terminal_report

    for rep in reps:
        out_console.print(terminal_report(rep))
        out_console.print()


@cli.command()
@click.argument("specs", nargs=-1, metavar="[SPEC...]")
@click.option("--markdown", is_flag=True, help="Print a Markdown table instead of a terminal table.")
@flop_options
def table(specs, markdown, seq_len, convention, causal, router, lm_head, input_embedding, mtp, recompute):
    """The zoo side by side: experts (routed / active / shared, fine-grained ratio), parameters, FLOPs, KV cache.

    With no SPEC, every spec of the bundled zoo."""
    conv = _convention(convention, causal, router, lm_head, input_embedding, mtp, recompute)
    specs = specs or tuple(str(p) for p in zoo_specs())
    _, reps = _reports(specs, (), seq_len, conv)
    from moezoo.report import zoo_markdown, zoo_table

    if markdown:
        click.echo(zoo_markdown(reps), nl=False)
    else:
        out_console.print(zoo_table(reps))


@cli.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@flop_options
def diff(a, b, seq_len, convention, causal, router, lm_head, input_embedding, mtp, recompute):
    """Which spec fields differ between A and B, and what that does to each figure."""
    conv = _convention(convention, causal, router, lm_head, input_embedding, mtp, recompute)
    items, reps = _reports((a, b), (), seq_len, conv)
    from moezoo.report import figure_diff, spec_diff

    fields = Table(title=f"fields: {items[0].spec.name} -> {items[1].spec.name}", header_style="bold")
    for c in ("field", "A", "B"):
        fields.add_column(c)
    changed = spec_diff(items[0].spec, items[1].spec)
    for key, va, vb in changed:
        fields.add_row(key, json.dumps(va), json.dumps(vb))
    figs = Table(title="figures", header_style="bold")
    for c in ("figure", "A", "B", "change"):
        figs.add_column(c, justify="left" if c == "figure" else "right")
    for row in figure_diff(reps[0], reps[1]):
        figs.add_row(*row)
    if changed:
        out_console.print(fields)
    else:
        out_console.print("no architectural field differs")
    out_console.print(figs)


@cli.command()
@click.argument("specs", nargs=-1, metavar="[SPEC...]")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the PNG files.")
@flop_options
def plot(specs, outdir, seq_len, convention, causal, router, lm_head, input_embedding, mtp, recompute):
    """PNG charts: total vs active parameters across the specs (log scale, labelled), and a parameter /
    FLOP breakdown per component for each spec. With no SPEC, the whole zoo."""
    conv = _convention(convention, causal, router, lm_head, input_embedding, mtp, recompute)
    specs = specs or tuple(str(p) for p in zoo_specs())
    _, reps = _reports(specs, (), seq_len, conv)
    from moezoo.report import plot_breakdown, plot_zoo

    written = [plot_zoo(reps, outdir / "zoo_total_vs_active.png")]
    for rep in reps:
        written.append(plot_breakdown(rep, outdir / f"{rep['name']}_breakdown.png"))
    for path in written:
        out_console.print(f"wrote {path}", markup=False)


GPU_CHOICES = ("a100-40gb", "a100-80gb", "h100", "h800", "h200", "b200", "mi300x", "l40s")  # moezoo.plan.GPUS


@cli.command("plan")
@click.argument("spec", metavar="SPEC")
@click.option("--gpus", type=click.IntRange(1), default=None, help="GPU count (default: tp x cp x pp x dp).")
@click.option("--tp", type=click.IntRange(1), default=1, show_default=True, help="Tensor-parallel degree (with sequence parallelism).")
@click.option("--pp", type=click.IntRange(1), default=1, show_default=True, help="Pipeline-parallel degree (1F1B schedule).")
@click.option("--pp-layers", default=None, metavar="N,N,...", help="Layers of each pipeline stage (needed when --pp does not divide the layers).")
@click.option("--cp", type=click.IntRange(1), default=1, show_default=True, help="Context-parallel degree (splits the sequence).")
@click.option("--ep", type=click.IntRange(1), default=1, show_default=True, help="Expert-parallel degree (taken from the DP x CP ranks).")
@click.option("--dp", type=click.IntRange(1), default=None, help="Data-parallel degree (default: gpus / (tp x cp x pp)).")
@click.option("--micro-batch", type=click.IntRange(1), default=1, show_default=True, help="Sequences per micro-batch.")
@click.option("--global-batch", type=click.IntRange(1), default=None, help="Sequences per step (default: micro-batch x dp x 4pp).")
@click.option("--seq-len", type=click.IntRange(1, 1 << 30), default=4096, show_default=True, help="Tokens per sequence.")
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none", show_default=True,
              help="Activation recomputation: none (eager attention keeps its scores), selective (attention core "
                   "recomputed, as flash attention does), full (only each layer's input kept).")
@click.option("--zero", type=click.IntRange(0, 3), default=1, show_default=True,
              help="ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also weights over the DP ranks.")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True, help="Weight and activation dtype.")
@click.option("--grad-dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="fp32", show_default=True,
              help="Gradient dtype (Megatron keeps fp32 main gradients).")
@click.option("--gpu", type=click.Choice(GPU_CHOICES), default="h100", show_default=True, help="GPU whose memory the plan must fit.")
@click.option("--dispatch", type=click.Choice(["expert", "device"]), default="expert", show_default=True,
              help="All-to-all: one copy per routed expert, or one per destination device.")
@click.option("--dropout", is_flag=True, help="Keep dropout masks (Korthikanti et al.'s GPT setting).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write PNGs here: memory by part across ZeRO x recompute, and KV cache / FLOPs vs sequence length.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
def plan_cmd(spec, gpus, tp, pp, pp_layers, cp, ep, dp, micro_batch, global_batch, seq_len, recompute, zero, dtype,
             grad_dtype, gpu, dispatch, dropout, as_json, plot_dir, overrides):
    """Per-GPU memory (parameters, weights, gradients, optimizer, activations) and per-step communication
    (all-to-all, data-parallel, pipeline bubble) of training SPEC under a parallel layout (docs/planning.md)."""
    from moezoo.plan import PlanError, make_layout, plan, plot_memory_grid, plot_seq_len, terminal_plan

    item = load_all((spec,), overrides)[0]
    try:
        layout = make_layout(item.spec, gpus=gpus, tp=tp, pp=pp, cp=cp, ep=ep, dp=dp, micro_batch=micro_batch,
                             global_batch=global_batch, seq_len=seq_len, recompute=recompute, zero=zero, dtype=dtype,
                             grad_dtype=grad_dtype, gpu=gpu, pp_layers=pp_layers, dispatch=dispatch, dropout=dropout)
    except PlanError as exc:
        err_console.print(f"{item.path}: error: {exc}", style="bold red", markup=False)
        raise InvalidInput() from None
    rep = plan(item.spec, layout)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
    else:
        out_console.print(terminal_plan(rep))
    if plot_dir is not None:
        for path in (plot_memory_grid(item.spec, layout, plot_dir / f"{rep['name']}_plan_memory.png"),
                     plot_seq_len(item.spec, plot_dir / f"{rep['name']}_seq_len.png")):
            err_console.print(f"wrote {path}", markup=False)


@cli.command()
@click.argument("specs", nargs=-1, metavar="SPEC...")
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), default=Path("generated"),
              show_default=True, help="Write OUTDIR/<name>/ for each spec.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--tiny", is_flag=True, help="Shrink to CPU size, keeping every architectural feature (docs/tiny.md).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the files on disk differ from a fresh build.")
@click.option("--zoo", is_flag=True,
              help="Build every zoo spec the generator supports (how generated/ is made), skipping the others.")
def build(specs, outdir, overrides, tiny, check, zoo):
    """Generate model.py, train.py, config.json, report.json and report.md for each spec.

    A spec using a feature the generator does not support yet is an error (exit 1, nothing written);
    with --zoo such specs are skipped with a note."""
    from moezoo.codegen import BuildError, differences, render
    from moezoo.codegen.build import write_all

    if zoo:
        specs = tuple(str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p) for p in zoo_specs())
    elif not specs:
        raise click.UsageError("give at least one SPEC, or --zoo")
    items = load_all(specs, overrides)
    results = []
    failed = False
    for item in items:
        try:
            results.append(render(item, tiny=tiny))
        except BuildError as exc:
            if zoo and str(exc).startswith("not supported yet"):
                out_console.print(f"skipped {item.spec.name}: {exc}", markup=False)
                continue
            err_console.print(f"{item.path}: error: {exc}", style="bold red", markup=False)
            failed = True
    if failed:
        raise InvalidInput()
    if check:
        stale = False
        for res in results:
            diffs = differences(res, outdir)
            if diffs:
                stale = True
                err_console.print(f"{outdir / res.name}: out of date; run `moezoo build` to regenerate", style="bold red",
                                  markup=False)
                for d in diffs:
                    err_console.print(d, markup=False, end="")
            else:
                out_console.print(f"up to date: {outdir / res.name}", markup=False)
        if stale:
            raise InvalidInput()
        return
    try:
        targets = write_all(results, outdir)  # all or nothing
    except BuildError as exc:
        err_console.print(f"{outdir}: error: {exc}", style="bold red", markup=False)
        raise InvalidInput() from None
    for res, target in zip(results, targets):
        out_console.print(f"wrote {target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target}/"
                          f" ({', '.join(res.files)})", markup=False)


@cli.command("import-hf")
@click.argument("config", metavar="CONFIG", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the spec to this file instead of stdout.")
def import_hf_cmd(config: Path, output: Path | None) -> None:
    """A Hugging Face config.json (or a directory holding one) -> a moezoo spec (YAML).

    Every key is read through the model_type's key table; keys without architectural effect, and unknown
    keys, are reported as warnings on stderr. A config that cannot be represented is an error (exit 1,
    nothing written)."""
    from moezoo.hf import HFError, import_hf

    label = str(config)
    try:
        result, text = import_hf(config)
    except HFError as exc:
        for line in exc.warnings:
            err_console.print(f"{label}: warning: {line}", style="yellow", markup=False)
        for line in exc.messages:
            err_console.print(f"{label}: error: {line}", style="bold red", markup=False)
        raise InvalidInput() from None
    for line in result.warnings:
        err_console.print(f"{label}: warning: {line}", style="yellow", markup=False)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)
        out_console.print(f"wrote {output}", markup=False)


@cli.command("export-hf")
@click.argument("spec", metavar="SPEC")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write config.json here instead of stdout.")
@click.option("--model-type", default=None, metavar="TYPE",
              help="transformers model_type to write (default: the spec's reference.hf_model_type).")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
def export_hf_cmd(spec: str, output: Path | None, model_type: str | None, overrides: tuple[str, ...]) -> None:
    """A spec -> a Hugging Face config.json. import-hf of the result gives back the same spec: what a
    config.json has no key for (name, description, reference, training-only settings) rides along in one
    `moezoo` key that transformers ignores."""
    from moezoo.hf import HFError, config_json, export_spec

    item = load_all((spec,), overrides)[0]
    try:
        result = export_spec(item.spec, model_type)
    except HFError as exc:
        for line in exc.messages:
            err_console.print(f"{item.path}: error: {line}", style="bold red", markup=False)
        raise InvalidInput() from None
    for line in result.warnings:
        err_console.print(f"{item.path}: warning: {line}", style="yellow", markup=False)
    text = config_json(result.config)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)
        out_console.print(f"wrote {output}", markup=False)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def run(args: list[str] | None = None, *, reraise: bool = False) -> int:
    """Run the command line; returns the exit status. Every failure is one message on stderr, never a
    traceback: 1 for bad input or a failed write, 2 for usage errors, 130 when interrupted (Ctrl-C).
    Unexpected exceptions (moezoo bugs) print one 'internal error' line; `reraise` (tests) or MOEZOO_DEBUG=1
    lets them propagate instead."""
    import os

    debug = reraise or bool(os.environ.get("MOEZOO_DEBUG"))
    try:
        cli.main(args, standalone_mode=False)
    except InvalidInput:
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:  # Ctrl-C at a click prompt
        click.echo("moezoo: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("moezoo: interrupted", err=True)  # builds in progress have removed their temporaries
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a write that failed: disk full, read-only or missing directory, permissions
        where = exc.filename if exc.filename is not None else "moezoo"
        reason = exc.strerror or _one_line(exc)
        err_console.print(f"{where}: error: {reason}", style="bold red", markup=False)
        return 1
    except MemoryError:
        click.echo("moezoo: error: out of memory (an input beyond the limits in docs/limits.md?)", err=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        click.echo(f"moezoo: internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in moezoo; "
                   "MOEZOO_DEBUG=1 shows the traceback)", err=True)
        return 1
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
