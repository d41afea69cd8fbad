"""Generated train.py: one file for every spec, runs for every buildable spec, learns, resumes exactly (and
refuses to resume a changed run), survives a crash while checkpointing, fine-tunes a transformers checkpoint
with parts frozen, balances over the global batch, and gives the single-process numbers under torchrun (data
and expert parallel, gloo on CPU).

Expected figures and where they come from:
- the unigram entropy of the shipped corpus's training part, 2.9795 nats/byte (train.py prints it;
  data/README.md); a model that learnt anything beyond byte frequencies evaluates well below it;
- bitwise equality for stop/resume on CPU with a fixed seed (the data order is a function of (seed, step));
- torchrun vs one process within 1e-5 over 10 steps (issue 12's bound; the same micro-batches are used, so
  only the order of floating-point reductions differs);
- --balance-scope global: f_i of the whole step and P_i of each micro-batch, averaged over equal micro-batches,
  is algebraically the loss of one micro-batch of the whole batch (Qiu et al. 2025); float rounding only.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from moezoo.codegen import BuildError, render, write
from moezoo.codegen.context import unsupported
from moezoo.spec import load_spec
from moezoo.zoo import zoo_specs

REPO = Path(__file__).resolve().parent.parent
BUILDABLE = [p.stem for p in zoo_specs() if not unsupported(load_spec(p).spec)]
UNIGRAM_ENTROPY = 2.9795  # nats per byte, training part (first 90%) of data/corpus.txt
SMALL = ["--batch-size", "4", "--seq-len", "32", "--eval-seqs", "4", "--no-progress", "--log-every", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """tiny(name) -> directory of that spec's --tiny build (model.py, train.py, corpus.txt, ...)."""
    root = tmp_path_factory.mktemp("train_builds")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = write(render(load_spec(REPO / "specs" / f"{name}.yaml"), tiny=True), root)
        return cache[name]

    return get


def run(build: Path, *args: str, out: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(build / "train.py"), "--out", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def torchrun(build: Path, *args: str, out: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone",
           str(build / "train.py"), "--out", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def metrics(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@contextlib.contextmanager
def one_thread():
    """In-process runs use one thread, as the subprocesses do (OMP_NUM_THREADS=1): tiny ops on two threads
    crawl when the 2-core machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def import_trainer(build: Path):
    """The generated train.py as a module (its `from model import ...` must find *this* build's model.py)."""
    sys.modules.pop("model", None)
    spec = importlib.util.spec_from_file_location(f"train_{build.name}", build / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop("model", None)
    return module


def test_the_unsupported_specs_fail_to_build_with_a_clear_message():
    for path in zoo_specs():  # today every zoo spec builds
        if path.stem not in BUILDABLE:
            with pytest.raises(BuildError, match="not supported yet"):
                render(load_spec(path), tiny=True)
    with pytest.raises(BuildError, match="not supported yet: norm.placement post with moe.extra_dense_ffn"):
        render(load_spec(REPO / "specs" / "minimax_text_01.yaml", ["moe.extra_dense_ffn=true"]), tiny=True)


def test_the_build_ships_the_trainer_and_its_corpus(tiny):
    build = tiny("deepseek_v3")
    assert (build / "corpus.txt").read_bytes() == (REPO / "data" / "corpus.txt").read_bytes()
    source = (build / "train.py").read_text()
    imports = [line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert set(imports) <= {"__future__", "argparse", "csv", "importlib", "json", "math", "os", "shutil", "sys", "time",
                            "dataclasses", "pathlib", "torch", "model", "safetensors"}, imports
    assert "torchrun --nproc_per_node" in source  # the docstring shows the launch commands
    for banned in ("__name__.endswith", ".forward =", "torch.load", "import pickle"):  # no class-name lookups or patching
        assert banned not in source, banned


def test_one_trainer_for_every_spec_in_at_most_600_lines(tiny):
    """Issue 12: the zoo's train.py copies are byte-identical, and the file has at most 600 non-blank lines
    (1,017-1,065 per spec before; nanoGPT's train.py: 336)."""
    sources = {name: (tiny(name) / "train.py").read_bytes() for name in BUILDABLE}
    assert len(set(sources.values())) == 1, [n for n in sources if sources[n] != sources[BUILDABLE[0]]]
    lines = [line for line in sources[BUILDABLE[0]].decode().splitlines() if line.strip()]
    assert len(lines) <= 600, len(lines)


@pytest.fixture(scope="module")
def three_step_runs(tiny, tmp_path_factory):
    """Every buildable spec's tiny trainer, 3 steps: its main() called in this process (no torch import per spec),
    stdout captured. name -> (exception or None, stdout, OUT)."""
    root = tmp_path_factory.mktemp("three_steps")
    results = {}
    with one_thread():
        for name in BUILDABLE:
            trainer, out, stdout = import_trainer(tiny(name)), root / name, io.StringIO()
            try:
                with contextlib.redirect_stdout(stdout):
                    trainer.main(["--out", str(out), "--steps", "3", *SMALL])
                results[name] = (None, stdout.getvalue(), out)
            except (Exception, SystemExit) as e:  # noqa: BLE001 - reported by the test of that spec
                results[name] = (e, stdout.getvalue(), out)
    return results


@pytest.mark.parametrize("name", BUILDABLE)
def test_every_trainer_documents_its_arguments_and_runs_three_steps(name, tiny, three_step_runs, capsys):
    trainer = import_trainer(tiny(name))
    with pytest.raises(SystemExit) as exit_:
        trainer.parse_args(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ["--steps", "--batch-size", "--seq-len", "--lr", "--warmup", "--grad-accum", "--seed", "--data",
                 "--out", "--resume", "--stop-after", "--eval-every", "--ep", "--dtype", "--compile"]:
        assert flag in help_text, flag

    error, stdout, out = three_step_runs[name]
    assert error is None, f"{stdout[-3000:]}\n{error!r}"
    rows = metrics(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    columns = list(rows[0])
    parts = columns[columns.index("loss") + 1 : columns.index("eval_loss")]  # the weighted parts of the loss
    assert "lm" in parts
    for r in rows:  # the total is their sum
        assert abs(float(r["loss"]) - sum(float(r[k]) for k in parts)) < 1e-5
    assert rows[-1]["eval_loss"]
    assert "load max/mean" in stdout
    assert (out / "ckpt" / "latest").read_text().strip() == "step_000003"
    assert (out / "expert_load.csv").exists()
    summary = [line for line in stdout.splitlines() if line.startswith("summary: ")]
    assert len(summary) == 1 and "steps 1..3 in" in summary[0] and "384 tokens" in summary[0], summary  # 3 steps x 4 x 32
    assert f"eval loss {float(rows[-1]['eval_loss']):.4f}" in summary[0] and "tok/s" in summary[0]
    if importlib.util.find_spec("matplotlib"):
        assert (out / "loss.png").stat().st_size > 0 and (out / "expert_load.png").stat().st_size > 0


def test_two_hundred_steps_learn_well_below_the_unigram_entropy(tiny, tmp_path):
    """mixtral_8x7b tiny, 200 steps of 8 x 64 bytes (100k tokens, ~0.7 epoch): eval 2.349 nats measured (2.498 at
    step 100) vs the unigram entropy 2.98; required: below 2.63.

    The defaults (16 x 128, `python train.py --steps 200`) reach lower still; docs/training.md has the figures.
    """
    out = tmp_path / "out"
    proc = run(tiny("mixtral_8x7b"), "--steps", "200", "--batch-size", "8", "--seq-len", "64", "--eval-every", "100",
               "--no-progress", "--log-every", "50", out=out, timeout=600)
    assert f"unigram entropy {UNIGRAM_ENTROPY:.4f} nats/token" in proc.stdout
    rows = metrics(out)
    first_eval, last_eval = float(rows[99]["eval_loss"]), float(rows[-1]["eval_loss"])
    assert last_eval < first_eval
    assert last_eval < UNIGRAM_ENTROPY - 0.35, last_eval


def test_switch_span_corruption_learns_and_drops_fewer_tokens_as_the_balance_loss_works(tiny, tmp_path):
    """switch_base_8 tiny (4 + 4 sparse layers of 8 top-1 experts, capacity factor 1.25 in training), 200 steps of
    8 x 64-token span-corruption pairs, seed 0. Measured here: LM loss 5.90 (mean of steps 1-10) -> 3.08
    (steps 181-200), eval 3.316 (step 100) -> 3.036 (step 200); dropped fraction 0.43 (steps 1-10), up to 0.82
    at step 32 as the router collapses onto few experts, 0.74 (steps 11-50), then 0.23 (steps 181-200) as the
    aux loss spreads the load (max/mean expert load of the first MoE layer 5.73 -> 1.42 over the same steps)."""
    out = tmp_path / "out"
    run(tiny("switch_base_8"), "--steps", "200", "--batch-size", "8", "--seq-len", "64", "--eval-every", "100",
        "--no-progress", "--log-every", "50", out=out, timeout=600)
    rows = metrics(out)
    assert len(rows) == 200

    def mean(column: str, first: int, last: int) -> float:  # over steps first..last (1-based, inclusive)
        return sum(float(r[column]) for r in rows[first - 1 : last]) / (last - first + 1)

    assert mean("lm", 181, 200) < mean("lm", 1, 10) - 2.0
    assert float(rows[-1]["eval_loss"]) < float(rows[99]["eval_loss"])
    early, late = mean("dropped_fraction", 11, 50), mean("dropped_fraction", 181, 200)
    assert late < 0.5 * early and late < 0.4, (early, late)
    first = "load_max_over_mean.encoder.layers.1"  # the first MoE layer
    assert mean(first, 181, 200) < mean(first, 11, 50)


def test_stop_and_resume_gives_bitwise_the_same_run(tiny, tmp_path):
    """deepseek_v3 tiny (MLA, MTP, group-limited routing, aux-free bias buffers): 40 steps straight vs 20 + 20."""
    build = tiny("deepseek_v3")
    args = ["--steps", "40", "--eval-every", "20", "--ckpt-every", "10", *SMALL]
    run(build, *args, out=tmp_path / "straight")
    run(build, *args, "--stop-after", "20", out=tmp_path / "split")
    assert (tmp_path / "split" / "ckpt" / "latest").read_text().strip() == "step_000020"
    run(build, *args, "--resume", out=tmp_path / "split")
    straight, split = metrics(tmp_path / "straight"), metrics(tmp_path / "split")
    assert [r["step"] for r in split] == [str(i) for i in range(1, 41)]
    for a, b in zip(straight, split):
        for key in ("loss", "lm", "mtp", "seq_aux", "eval_loss", "grad_norm", "lr", "load_max_over_mean"):
            assert a[key] == b[key], (a["step"], key, a[key], b[key])  # printed floats: bitwise equal
    for name in ("model", "optimizer"):  # weights, buffers, AdamW moments and RNG states
        w1 = load_file(tmp_path / "straight" / "ckpt" / "step_000040" / f"{name}.safetensors")
        w2 = load_file(tmp_path / "split" / "ckpt" / "step_000040" / f"{name}.safetensors")
        assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    ref = load_file(tmp_path / "split" / "ckpt" / "step_000040" / "model.safetensors")
    assert any(k.endswith("e_score_correction_bias") and ref[k].abs().sum() > 0 for k in ref)  # the bias moved

    # The weights file loads into the model as it is.
    sys.modules.pop("model", None)
    sys.path.insert(0, str(build))
    try:
        import model as generated

        net = generated.Model(generated.ModelConfig())
        net.load_state_dict(ref)
    finally:
        sys.path.remove(str(build))
        sys.modules.pop("model", None)


CRASH = """
import os, signal, sys
sys.argv = ["train.py"] + {args!r}
sys.path.insert(0, {build!r})
import train
writes = []
original = train.write_file
def dying(path, data):
    writes.append(path)
    if len(writes) == 5:  # checkpoint 1 wrote 4 files (2 safetensors, state.json, latest); die in the next weights
        with open(path, "wb") as f:
            f.write(b"\\0" * 1000)
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    original(path, data)
train.write_file = dying
train.main()
"""


def test_a_crash_while_checkpointing_leaves_the_last_good_checkpoint(tiny, tmp_path):
    build = tiny("deepseek_v3")
    out = tmp_path / "out"
    args = ["--steps", "6", "--ckpt-every", "2", "--out", str(out), *SMALL]
    proc = subprocess.run([sys.executable, "-c", CRASH.format(args=args, build=str(build))], capture_output=True,
                          text=True, env=ENV, timeout=300, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    ckpt = out / "ckpt"
    assert (ckpt / "latest").read_text().strip() == "step_000002"
    assert any(p.name.startswith(".step_000004.tmp") for p in ckpt.iterdir())  # the torn write, never renamed
    weights = load_file(ckpt / "step_000002" / "model.safetensors")
    state = json.loads((ckpt / "step_000002" / "state.json").read_text())
    assert state["step"] == 2 and len(weights) > 10
    proc = run(build, "--steps", "6", "--ckpt-every", "2", *SMALL, "--resume", out=out)
    assert "resumed from" in proc.stdout and "step_000002" in proc.stdout
    assert [int(r["step"]) for r in metrics(out)] == list(range(1, 7))
    assert not any(p.name.startswith(".") for p in ckpt.iterdir())  # stale partial writes are cleaned


def test_bad_data_gives_one_clear_error(tiny, tmp_path):
    trainer = import_trainer(tiny("mixtral_8x7b"))
    cases = {
        "missing": (tmp_path / "nope.txt", "no such file"),
        "empty": (tmp_path / "empty.txt", "the file is empty"),
        "short": (tmp_path / "short.txt", "too short for one batch"),
        "vocab": (tmp_path / "big.bin", "token 300 >= vocab_size 256"),
        "odd": (tmp_path / "odd.bin", "not a whole number of uint16 tokens"),
    }
    cases["empty"][0].write_text("")
    cases["short"][0].write_text("Too short for a batch of 32 tokens.\n")
    cases["vocab"][0].write_bytes(torch.full((1000,), 300, dtype=torch.int16).numpy().tobytes())
    cases["odd"][0].write_bytes(b"abc")
    for path, message in cases.values():
        with pytest.raises(SystemExit, match=message):  # SystemExit(message): exit status 1, no traceback
            trainer.main(["--data", str(path), "--out", str(tmp_path / "o"), *SMALL])


def test_pretokenised_bin_data(tiny, tmp_path):
    """A nanoGPT-style .bin (uint16 tokens) trains exactly like the same bytes as text."""
    trainer = import_trainer(tiny("mixtral_8x7b"))
    data = (REPO / "data" / "corpus.txt").read_bytes()[:40000]
    (tmp_path / "a.txt").write_bytes(data)
    (tmp_path / "a.bin").write_bytes(torch.tensor(list(data), dtype=torch.int16).numpy().tobytes())
    for kind in ("txt", "bin"):
        with one_thread(), contextlib.redirect_stdout(io.StringIO()):
            trainer.main(["--steps", "2", "--data", str(tmp_path / f"a.{kind}"), "--out", str(tmp_path / kind), *SMALL])
    losses = [[(r["loss"], r["eval_loss"]) for r in metrics(tmp_path / kind)] for kind in ("txt", "bin")]
    assert losses[0] == losses[1]


def test_mfu_flops_match_the_report(tiny):
    """Model.flops_per_token (train.py's MFU) at S = 4096, without MTP, is report.json's flops.train_per_token."""
    for name in ("deepseek_v3", "mixtral_8x7b", "gpt_oss_20b", "switch_base_8"):  # MLA + MTP; GQA; windows; enc-dec
        build = tiny(name)
        trainer = import_trainer(build)
        with torch.device("meta"):
            model = trainer.Model(trainer.ModelConfig())
        report = json.loads((build / "report.json").read_text())
        assert model.flops_per_token(4096, mtp=False) == pytest.approx(report["flops"]["train_per_token"], rel=1e-12)
        assert model.flops_per_token(128) < model.flops_per_token(4096)


@pytest.mark.parametrize("mode", ["dp", "ep"])
def test_torchrun_on_cpu_matches_one_process(mode, tiny, tmp_path):
    """torchrun --nproc_per_node=2 (gloo): FSDP2 data parallel, or --ep 2 expert parallel (all-to-all), vs one
    process with the same global batch and micro-batches (--grad-accum 2), 10 steps of deepseek_v3 tiny. Bound 1e-5
    (issue 12); measured 4.8e-7 (DP) and 2.4e-7 (EP) on the training loss and its parts."""
    build = tiny("deepseek_v3")
    args = ["--steps", "10", "--batch-size", "8", "--grad-accum", "2", "--seq-len", "32", "--eval-every", "10",
            "--eval-seqs", "4", "--no-progress", "--log-every", "5"]
    single = tmp_path / "single"
    run(build, *args, out=single)
    parallel = tmp_path / mode
    torchrun(build, *args, *(["--ep", "2"] if mode == "ep" else []), out=parallel)
    a, b = metrics(single), metrics(parallel)
    assert len(a) == len(b) == 10
    worst = max(abs(float(x[k]) - float(y[k])) for x, y in zip(a, b) for k in ("loss", "lm", "mtp", "seq_aux"))
    assert worst < 1e-5, worst
    assert abs(float(a[-1]["eval_loss"]) - float(b[-1]["eval_loss"])) < 1e-5
    for x, y in zip(a, b):  # the same routing decisions; the load is all-reduced over the ranks
        assert float(x["load_max_over_mean"]) == pytest.approx(float(y["load_max_over_mean"]), abs=1e-6)


def test_aux_free_bias_updates_even_out_the_expert_load(tiny, tmp_path):
    """deepseek_v3 tiny, 100 steps of 8 x 64: worst layer's max/mean load over the last 20 steps.

    Without the update a layer collapses onto one expert (max/mean 4.0: every token's top-2 includes it); with
    gamma = 0.01 the bias spreads the load (1.57 measured). docs/training.md has the 200-step figures at the
    spec's gamma = 0.001 (1.70 vs 4.00 at step 200).
    """
    build = tiny("deepseek_v3")
    worst = {}
    for gamma in ("0", "0.01"):
        out = tmp_path / gamma
        run(build, "--steps", "100", "--batch-size", "8", "--seq-len", "64", "--eval-every", "0", "--eval-seqs", "4",
            "--no-progress", "--bias-update-rate", gamma, out=out)
        rows = metrics(out)[-20:]
        worst[gamma] = sum(float(r["load_max_over_mean"]) for r in rows) / len(rows)
    assert worst["0"] > 3.0 and worst["0.01"] < 2.0, worst


def test_resume_refuses_a_changed_run_naming_the_argument(tiny, tmp_path):
    """--resume with another --steps (the cosine would be re-derived: lr 3.0e-4 -> 4.7e-4 in issue 12's report) or
    --lr is refused, naming the argument; --allow-changes continues anyway."""
    trainer = import_trainer(tiny("mixtral_8x7b"))
    out = str(tmp_path / "out")
    base = ["--out", out, "--steps", "4", "--warmup", "1", *SMALL]
    with one_thread(), contextlib.redirect_stdout(io.StringIO()):
        trainer.main([*base, "--stop-after", "2"])
        for changed, message in ((["--steps", "5"], "--steps was 4, now 5"), (["--lr", "0.001"], "--lr was 0.003, now 0.001"),
                                 (["--grad-accum", "2"], "--grad-accum was 1, now 2")):
            with pytest.raises(SystemExit, match=message) as exit_:
                trainer.main([*base, *changed, "--resume"])
            assert "--allow-changes" in str(exit_.value.code)
        trainer.main([*base, "--lr", "0.001", "--resume", "--allow-changes"])
    assert [int(r["step"]) for r in metrics(tmp_path / "out")] == [1, 2, 3, 4]


def test_bad_arguments_and_checkpoints_give_one_clear_error(tiny, tmp_path, capsys):
    """Issue 18's train.py cases: usage errors exit 2 naming the flag, bad values and bad files exit 1 with one
    message (SystemExit(str)), never a traceback; a checkpoint is never unpickled."""
    trainer = import_trainer(tiny("mixtral_8x7b"))
    out = tmp_path / "out"
    for args, flag in ((["--log-every", "0"], "--log-every"), (["--lr", "-1"], "--lr"), (["--lr", "inf"], "--lr"),
                       (["--batch-size", "0"], "--batch-size"), (["--steps", "0"], "--steps"),
                       (["--val-fraction", "1.5"], "--val-fraction"), (["--min-lr-ratio", "-2"], "--min-lr-ratio")):
        with pytest.raises(SystemExit) as exit_:
            trainer.main(["--out", str(out), *args])
        assert exit_.value.code == 2, args
        assert f"argument {flag}: invalid value" in capsys.readouterr().err
    with one_thread(), contextlib.redirect_stdout(io.StringIO()):
        trainer.main(["--out", str(out), "--steps", "1", *SMALL])  # a good checkpoint to break below
    ckpt = out / "ckpt" / "step_000001"
    cases = [
        (["--set", "num_layers=null"], "num_layers must be a int"),
        (["--set", "num_layers=0"], "num_layers must be finite and >= 1"),
        (["--set", "model_dim=-4"], "model_dim must be finite and >= 1"),
        (["--set", "num_layers=" + "9" * 5000], "not a valid value"),
        (["--ep", "16"], "--ep 16 must divide the number of routed experts (8)"),
        (["--init-from", str(tmp_path)], f"error: --init-from {tmp_path}: "),  # no checkpoint there
    ]
    for args, message in cases:
        with pytest.raises(SystemExit, match=re.escape(message)):
            trainer.main(["--out", str(tmp_path / "o"), *SMALL, *args])
    # a checkpoint of other shapes, a truncated one, a corrupt one, and a crafted pickle instead of state.json
    other = import_trainer(tiny("deepseek_v3"))
    shapes = r"model\.safetensors: \S+: (missing|torch\.float32 \[.*\]), not torch\.float32"
    with pytest.raises(SystemExit, match=shapes), contextlib.redirect_stdout(io.StringIO()):
        other.main(["--out", str(tmp_path / "o2"), *SMALL, "--init-from", str(ckpt)])
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    for broken in (data[: len(data) // 2], b"\xff" * 64):
        weights.write_bytes(broken)
        with pytest.raises(SystemExit, match="not a readable safetensors file"):
            trainer.main(["--out", str(out), *SMALL, "--steps", "1", "--resume"])
    (ckpt / "state.json").unlink()
    marker = tmp_path / "pwned"
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (ckpt / "state.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(SystemExit, match="not a train.py checkpoint"):
        trainer.main(["--out", str(out), *SMALL, "--steps", "1", "--resume"])
    assert not marker.exists()


def test_an_encoder_decoder_refuses_one_token_sequences(tiny):
    trainer = import_trainer(tiny("switch_base_8"))
    with pytest.raises(SystemExit, match="--seq-len 1: span corruption needs at least 2 tokens"):
        trainer.main(["--seq-len", "1", "--steps", "1", "--no-progress"])


def _hf_mixtral_checkpoint(path: Path, capsys) -> Path:
    """A tiny Mixtral saved by transformers (save_pretrained), imported (`moezoo import-hf`) and built: returns
    the build directory. Byte-level vocabulary (256) so the shipped corpus is its data."""
    transformers = pytest.importorskip("transformers")
    from moezoo import cli

    config = transformers.MixtralConfig(vocab_size=256, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                                        num_experts_per_tok=2, max_position_embeddings=64, router_aux_loss_coef=0.02)
    torch.manual_seed(0)
    transformers.MixtralForCausalLM(config).save_pretrained(path / "hf")
    argv, sys.argv = sys.argv, ["moezoo", "import-hf", str(path / "hf"), "-o", str(path / "spec.yaml")]
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main()
    finally:
        sys.argv = argv
    assert exit_.value.code == 0, capsys.readouterr().err
    return write(render(load_spec(path / "spec.yaml")), path / "build")


def test_fine_tuning_a_transformers_checkpoint_with_each_freeze_choice(tmp_path, capsys):
    """--init-from a transformers-saved Mixtral, 2 steps with --freeze experts / router / non-experts: the frozen
    parameters are bitwise those of the checkpoint, every other parameter moved, and the log counts what trains."""
    build = _hf_mixtral_checkpoint(tmp_path, capsys)
    trainer = import_trainer(build)
    start = trainer.Model.from_hf(tmp_path / "hf").state_dict()
    names = [n for n, _ in trainer.Model.from_hf(tmp_path / "hf").named_parameters()]
    kinds = {n: "experts" if ".experts." in n else "router" if ".router." in n else "other" for n in names}
    assert set(kinds.values()) == {"experts", "router", "other"}
    for choice in ("experts", "router", "non-experts"):
        out, stdout = tmp_path / choice, io.StringIO()
        with one_thread(), contextlib.redirect_stdout(stdout):
            trainer.main(["--init-from", str(tmp_path / "hf"), "--freeze", choice, "--steps", "2", "--warmup", "0",
                          "--out", str(out), *SMALL])
        after = load_file(out / "ckpt" / "step_000002" / "model.safetensors")
        frozen = {n for n in names if kinds[n] == choice or (choice == "non-experts" and kinds[n] != "experts")}
        assert frozen and len(frozen) < len(names)
        for n in names:
            assert torch.equal(after[n], start[n]) == (n in frozen), (choice, n)
        trained = sum(start[n].numel() for n in names if n not in frozen)
        assert f"{trained:,} trained (frozen: {choice})" in stdout.getvalue()
        state = load_file(out / "ckpt" / "step_000002" / "optimizer.safetensors")
        assert {k.split(".", 1)[1] for k in state if k.startswith("exp_avg.")} == set(names) - frozen  # no AdamW state


def test_global_balance_scope_equals_one_micro_batch_of_the_whole_batch(tiny, tmp_path):
    """--balance-scope global: f_i over the whole step (all micro-batches and ranks), so --grad-accum 2 and
    torchrun --nproc_per_node=2 give the loss of one micro-batch of the whole batch (--grad-accum 1), to float
    rounding; with the default micro scope the aux loss of --grad-accum 2 differs. mixtral_8x7b tiny (Switch-style
    aux loss pooled over layers, transformers' convention) and deepseek_moe_16b tiny (DeepSeekMoE expert-level
    aux loss per layer), 3 steps of 8 x 32."""
    args = ["--steps", "3", "--batch-size", "8", "--seq-len", "32", "--eval-every", "0", "--eval-seqs", "2",
            "--no-progress", "--balance-scope"]
    for name in ("mixtral_8x7b", "deepseek_moe_16b"):
        build = tiny(name)
        trainer = import_trainer(build)
        runs = {}
        with one_thread(), contextlib.redirect_stdout(io.StringIO()):
            for key, extra in (("whole", ["global", "--grad-accum", "1"]), ("accum", ["global", "--grad-accum", "2"]),
                               ("micro", ["micro", "--grad-accum", "2"])):
                trainer.main(["--out", str(tmp_path / name / key), *args, *extra])
                runs[key] = metrics(tmp_path / name / key)
        if name == "mixtral_8x7b":
            torchrun(build, *args, "global", "--grad-accum", "2", out=tmp_path / name / "torchrun")
            runs["torchrun"] = metrics(tmp_path / name / "torchrun")
        for key in runs.keys() - {"whole", "micro"}:
            worst = max(abs(float(x[k]) - float(y[k])) for x, y in zip(runs["whole"], runs[key]) for k in ("loss", "lm", "aux"))
            assert worst < 1e-5, (name, key, worst)
        assert abs(float(runs["micro"][0]["aux"]) - float(runs["whole"][0]["aux"])) > 1e-5, name  # the test has teeth
