"""Issue 18: every bad input gets one message, exit 1 (2 for usage), no traceback, no hang, nothing changed on disk;
builds are all-or-nothing. Each case is a reproducer from the issue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from moezoo import cli

REPO = Path(__file__).resolve().parent.parent
MIXTRAL = REPO / "specs" / "mixtral_8x7b.yaml"
HF = REPO / "tests" / "data" / "hf_configs"


def run(args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.run([str(a) for a in args], reraise=True)  # an unexpected exception fails the test
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def fails_once(args, capsys, needle: str) -> str:
    code, _, err = run(args, capsys)
    assert code == 1, err
    assert needle in err, err
    return err


def spec_text(**changes) -> str:
    raw = yaml.safe_load(MIXTRAL.read_text())
    for path, value in changes.items():
        node = raw
        *head, last = path.split("__")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return yaml.safe_dump(raw, allow_unicode=False)


# --------------------------------------------------------------------------- spec loader


@pytest.mark.parametrize(("line", "needle"), [
    ("num_layers: !!int abc", "num_layers: cannot read value"),
    ("num_layers: !foo 32", "could not determine a constructor"),
])
def test_bad_tags(line, needle, tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(MIXTRAL.read_text().replace("num_layers: 32", line, 1))
    fails_once(["validate", f], capsys, needle)


def test_extends_symlink_loop_and_nul(tmp_path, capsys):
    os.symlink(tmp_path / "b.yaml", tmp_path / "a.yaml")
    os.symlink(tmp_path / "a.yaml", tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("extends: a.yaml\nname: c\n")
    fails_once(["validate", tmp_path / "c.yaml"], capsys, "c.yaml:1:10: error: extends:")
    (tmp_path / "d.yaml").write_text('extends: "a\\0b.yaml"\nname: d\n')
    fails_once(["validate", tmp_path / "d.yaml"], capsys, "the path contains a NUL character")


def test_fifo_and_device_do_not_block(tmp_path, capsys):
    os.mkfifo(tmp_path / "f.yaml")
    start = time.monotonic()
    fails_once(["validate", tmp_path / "f.yaml"], capsys, "not a regular file")
    fails_once(["validate", "/dev/zero"], capsys, "not a regular file")
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("value", ["9" * 5000, "[&a [x,x,x], &b [*a,*a,*a], &c [*b,*b,*b]]", "!!int zz"])
def test_hostile_set_values(value, capsys):
    fails_once(["validate", MIXTRAL, "--set", f"num_layers={value}"], capsys, "--set")


# --------------------------------------------------------------------------- import-hf


def _config(tmp_path, text) -> Path:
    (tmp_path / "m").mkdir(exist_ok=True)
    path = tmp_path / "m" / "config.json"
    path.write_text(text if isinstance(text, str) else json.dumps(text))
    return path


@pytest.mark.parametrize(("change", "needle"), [
    ({"num_hidden_layers": "24"}, "'num_hidden_layers': must be an integer from 1 to 4096 (got '24')"),
    ({"num_hidden_layers": 10**9}, "'num_hidden_layers': must be an integer from 1 to 4096"),
    ({"rope_parameters": "rope"}, "cannot read 'rope_parameters'"),
])
def test_import_hf_bad_values(change, needle, tmp_path, capsys):
    cfg = {**json.loads((HF / "mixtral_8x7b" / "config.json").read_text()), **change}
    out = tmp_path / "out.yaml"
    fails_once(["import-hf", _config(tmp_path, cfg), "-o", out], capsys, needle)
    assert not out.exists()


def test_import_hf_deep_and_huge(tmp_path, capsys):
    fails_once(["import-hf", _config(tmp_path, '{"a": ' + "[" * 50000 + "]" * 50000 + "}")], capsys, "nested deeper")
    fails_once(["import-hf", _config(tmp_path, '{"vocab_size": ' + "9" * 5000 + "}")], capsys, "5000 digits")


def test_import_hf_5000_layer_switch_is_quick(tmp_path, capsys):
    cfg = {**json.loads((HF / "switch_c_2048" / "config.json").read_text()), "num_layers": 5000,
           "num_decoder_layers": 5000}
    start = time.monotonic()
    fails_once(["import-hf", _config(tmp_path, cfg)], capsys, "must be an integer from 1 to 4096")
    assert time.monotonic() - start < 5


# --------------------------------------------------------------------------- validated specs that built crashing code


@pytest.mark.parametrize(("changes", "needle"), [
    ({"position__scaling": {"kind": "yarn", "factor": 4, "original_max_seq_len": 4096, "beta_fast": float("inf")}},
     "beta_fast: should be a finite number"),
    ({"position__scaling": {"kind": "yarn", "factor": 4, "original_max_seq_len": 4096, "mscale": float("inf")}},
     "mscale: should be a finite number"),
    ({"description": "a \u202e b"}, "U+202E (a bidirectional control)"),
    ({"description": "a \u2028 b"}, "U+2028 (LINE SEPARATOR)"),
    ({"reference__sources": ["http://x/\ud800"]}, "U+D800 (a lone surrogate)"),
    ({"reference__total_params": {"value": 0}}, "reference.total_params.value: should be greater than or equal to 1"),
])
def test_rejected_at_validation_with_a_location(changes, needle, tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(spec_text(**changes))
    err = fails_once(["validate", f], capsys, needle)
    assert err.startswith(f"{f}:")


def test_t5_one_bucket_rejected(tmp_path, capsys):
    raw = yaml.safe_load((REPO / "specs" / "switch_base_8.yaml").read_text())
    raw["position"] = {"kind": "t5_relative", "num_buckets": 1}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    fails_once(["validate", tmp_path / "s.yaml"], capsys, "position.num_buckets: 1 buckets")


def test_dense_encoder_decoder_refused_at_build(tmp_path, capsys):
    raw = yaml.safe_load((REPO / "specs" / "switch_base_8.yaml").read_text())
    raw.pop("moe")
    raw.pop("reference", None)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    fails_once(["build", "--tiny", "-o", tmp_path / "out", tmp_path / "s.yaml"], capsys, "not supported yet")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field", ["sliding_window", "nope", "hybrid"])
def test_layer_patterns_build_tiny(field, tmp_path, capsys):
    raw = yaml.safe_load(MIXTRAL.read_text())
    if field == "sliding_window":
        raw["attention"]["sliding_window"] = {"size": 4096, "layers": {"pattern": "10" * 16}}
    elif field == "nope":
        raw["position"]["nope_layers"] = {"pattern": "0001" * 8}
    else:
        raw["hybrid_attention"] = {"kind": "lightning", "num_heads": 32, "head_dim": 128,
                                   "softmax_layers": {"pattern": "00000001" * 4}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = run(["build", "--tiny", "-o", tmp_path / "out", tmp_path / "s.yaml"], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "mixtral_8x7b" / "model.py").is_file()


def test_qwen2_moe_sliding_window_import_builds(tmp_path, capsys):
    cfg = {**json.loads((HF / "qwen1_5_moe_a2_7b" / "config.json").read_text()), "use_sliding_window": True}
    out = tmp_path / "q.yaml"
    code, _, err = run(["import-hf", _config(tmp_path, cfg), "-o", out], capsys)
    assert code == 0, err
    code, _, err = run(["build", "--tiny", "-o", tmp_path / "b", out], capsys)
    assert code == 0, err


# --------------------------------------------------------------------------- build output


def test_build_refuses_bad_targets(tmp_path, capsys):
    (tmp_path / "outside").mkdir()
    (tmp_path / "o1").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "o1" / "mixtral_8x7b")
    fails_once(["build", "--tiny", "-o", tmp_path / "o1", MIXTRAL], capsys, "is a symbolic link; refusing")
    (tmp_path / "file").write_text("x")
    fails_once(["build", "--tiny", "-o", tmp_path / "file" / "sub", MIXTRAL], capsys, "is not a directory")
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "mixtral_8x7b").write_text("x")
    fails_once(["build", "--tiny", "-o", tmp_path / "o2", MIXTRAL], capsys, "exists and is not a directory")
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["mixtral_8x7b"]
    assert not list((tmp_path / "outside").iterdir())


def test_multi_spec_build_is_all_or_nothing(tmp_path, capsys, monkeypatch):
    from moezoo.codegen import build as build_mod

    out = tmp_path / "out"
    assert run(["build", "--tiny", "-o", out, MIXTRAL], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in (out / "mixtral_8x7b").iterdir()}
    real = build_mod.os.rename
    calls = []

    def second_fails(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(b))
        return real(a, b)

    monkeypatch.setattr(build_mod.os, "rename", second_fails)
    monkeypatch.setattr(build_mod, "_exchange", lambda a, b: False)  # the fallback path, the harder one
    code, _, err = run(["build", "--tiny", "-o", out, MIXTRAL, REPO / "specs" / "olmoe_1b_7b.yaml"], capsys)
    assert code == 1 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["mixtral_8x7b"]  # olmoe not written, no temporaries
    assert {p.name: p.read_bytes() for p in (out / "mixtral_8x7b").iterdir()} == before


def test_exchange_keeps_old_or_new_and_sweeps_killed_temporaries(tmp_path, capsys):
    from moezoo.codegen import build as build_mod

    out = tmp_path / "out"
    assert run(["build", "--tiny", "-o", out, MIXTRAL], capsys)[0] == 0
    stale = out / ".mixtral_8x7b.abc.moezoo-tmp"  # what a SIGKILLed build leaves
    stale.mkdir()
    os.utime(stale, (0, 0))
    assert run(["build", "--tiny", "-o", out, MIXTRAL], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["mixtral_8x7b"]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a")
    if build_mod._exchange(a, b):
        assert (b / "x").read_text() == "a" and not (a / "x").exists()


def test_sigint_exits_130_with_one_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "moezoo.cli", "build", "--zoo", "--tiny", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the build finished before the signal")
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "moezoo: interrupted" and "Traceback" not in err
    if out.exists():
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
