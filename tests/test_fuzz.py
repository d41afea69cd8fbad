"""Issue 18 item 5 and 2: seeded, bounded fuzzing of the command line.

Mutations (types, ranges, deletions, nesting, huge numbers, odd text) of the real specs (specs/*.yaml) and of
the shipped reference config.json files (tests/data/hf_configs) go through `moezoo validate / report / build
--tiny / import-hf` in-process (`moezoo.cli.run(..., reraise=True)`: an unexpected exception fails the test).
Invariant: exit 0 and the output complete (an imported spec validates and builds), or exit 1 with messages of
the form `FILE...: error: ...`; never a traceback. Hang cases run as subprocesses in test_reliability.py.
Second property: a spec that validates builds with --tiny, and the built model.py runs its smoke test.
"""

from __future__ import annotations

import copy
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moezoo import cli

REPO = Path(__file__).resolve().parent.parent
SPECS = sorted((REPO / "specs").glob("*.yaml"))
CONFIGS = sorted((REPO / "tests" / "data" / "hf_configs").glob("*/config.json"))
BUDGET = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))


def paths(node, prefix=()):
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append(prefix + (key,))
        out.extend(paths(value, prefix + (key,)))
    return out


def replacement(rng: random.Random, old):
    pool = [None, True, False, 0, -1, 1, 2, 10**9, 10**20, 10**400, 1e9, 1e308, math.inf, -math.inf, math.nan, -0.0,
            0.5, "", "x" * 5000, "\u202e\u2028", [], {}, [old], {"a": old}, {"kind": "rope"}, 5000, 3, "1e9", "gqa"]
    if isinstance(old, int) and not isinstance(old, bool):
        pool += [str(old), float(old), old * 1000, old + 1, old - 1, -old]
    elif isinstance(old, str):
        pool += [old + "x", old.upper()]
    elif isinstance(old, list):
        pool += [old * 50, old[:-1], ",".join(map(str, old))]
    elif isinstance(old, dict):
        pool += [json.dumps(old), list(old.values())]
    return rng.choice(pool)


def mutate(data, rng: random.Random):
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        found = paths(data)
        if not found:
            break
        path = rng.choice(found)
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        op = rng.random()
        if op < 0.2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif op < 0.27 and isinstance(parent, dict):
            parent[rng.choice(["top_kk", "kind", "zzz", "layers"])] = replacement(rng, 1)
        else:
            parent[path[-1]] = replacement(rng, parent[path[-1]])
    return data


def check(args, capsys) -> int:
    capsys.readouterr()
    code = cli.run([str(a) for a in args], reraise=True)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code in (0, 1), (code, err)
    if code == 1:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines and all(": error: " in line or ": warning: " in line for line in lines), err
    return code


COUNT = {"cases": 0, "commands": 0}


@BUDGET
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_specs(seed, tmp_path_factory, capsys):
    rng = random.Random(seed)
    tmp = tmp_path_factory.mktemp("fz")
    data = mutate(yaml.safe_load(rng.choice(SPECS).read_text()), rng)
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except ValueError:  # a 10**400 Python cannot print: the loader's own 4000-digit check covers it
        return
    spec = tmp / "m.yaml"
    spec.write_text(text)
    COUNT["cases"] += 1
    for args in (["validate", spec], ["report", "--json", spec], ["build", "--tiny", "-o", tmp / "out", spec]):
        COUNT["commands"] += 1
        code = check(args, capsys)
        if args[0] == "build" and code == 0:
            assert (tmp / "out" / data["name"] / "model.py").is_file()
        if code == 1:
            break


@BUDGET
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_hf_configs(seed, tmp_path_factory, capsys):
    rng = random.Random(seed)
    tmp = tmp_path_factory.mktemp("fz")
    data = mutate(json.loads(rng.choice(CONFIGS).read_text()), rng)
    try:
        text = json.dumps(data)
    except ValueError:
        return
    (tmp / "m").mkdir()
    (tmp / "m" / "config.json").write_text(text)
    out = tmp / "m.yaml"
    if check(["import-hf", tmp / "m" / "config.json", "-o", out], capsys) == 0:
        assert check(["build", "--tiny", "-o", tmp / "b", out], capsys) == 0  # what import-hf writes builds
    else:
        assert not out.exists()


# --------------------------------------------------------------------------- validated specs build and run

LAYER_FIELDS = ["moe", "sliding_window", "chunked", "nope", "hybrid"]


@settings(max_examples=12, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), field=st.sampled_from(LAYER_FIELDS), pattern=st.booleans(),
       every=st.integers(1, 6), top_k=st.integers(1, 4), experts=st.integers(1, 16))
def test_valid_specs_build_and_run(seed, field, pattern, every, top_k, experts, tmp_path_factory, capsys):
    """Spec values over the schema's ranges on every layer-pattern field; whatever validates must build --tiny
    and its model.py must pass its own smoke test."""
    rng = random.Random(seed)
    name = rng.choice(["mixtral_8x7b", "qwen3_30b_a3b", "deepseek_v2_lite", "gpt_oss_20b"])
    raw = yaml.safe_load((REPO / "specs" / f"{name}.yaml").read_text())
    n = raw["num_layers"] = rng.choice([2, 4, 8, 12])
    sel = ({"pattern": "".join(rng.choice("10") for _ in range(n - 1)) + "1"} if pattern
           else {"every": every, "offset": rng.randrange(every)})
    att = raw["attention"]
    if field == "moe":
        raw["moe"]["layers"] = sel
    elif field in ("sliding_window", "chunked") and att["kind"] != "mla":
        att.pop("sliding_window", None)
        att[field] = {"size": rng.choice([1, 16, 128]), "layers": sel}
    elif field == "nope":
        raw["position"]["nope_layers"] = sel
    elif field == "hybrid":
        raw["hybrid_attention"] = {"kind": "lightning", "num_heads": 4, "head_dim": 32, "softmax_layers": sel}
    raw["moe"]["experts"]["num_routed"] = experts
    raw["moe"]["router"]["top_k"] = top_k
    raw["moe"]["router"].pop("groups", None)
    raw.pop("reference", None)
    tmp = tmp_path_factory.mktemp("prop")
    (tmp / "s.yaml").write_text(yaml.safe_dump(raw))
    if check(["validate", tmp / "s.yaml"], capsys) == 1:
        return
    code = check(["build", "--tiny", "-o", tmp / "out", tmp / "s.yaml"], capsys)
    if code == 1:  # only "not supported yet" may stop a valid spec
        return
    model = tmp / "out" / raw["name"] / "model.py"
    proc = subprocess.run([sys.executable, str(model)], capture_output=True, text=True, timeout=120,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
