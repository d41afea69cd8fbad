"""`moezoo plan`: per-GPU memory and per-step communication under a parallel layout.

Anchors, each with its source:
- Megatron-LM `compute_weight_and_optimizer_memory` (megatron/training/theoretical_memory_usage.py,
  NVIDIA/Megatron-LM commit 00caa53af30912914981c86f39db123961678bbd): transcribed below as
  `megatron_weight_and_optimizer_bytes`; 18 bytes per parameter, 6 + 12/DP with the distributed optimizer,
  the most loaded shard holding (transformer block / PP + MTP block + one embedding) / TP (+ the untied head
  when PP = 1).
- Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", Table 2:
  activations per layer 34sbh + 5as^2b bytes (no recomputation), 34sbh (selective), with tensor + sequence
  parallelism both divided by t; full recomputation keeps 2sbh per layer (section 4.1).
- DeepSeek-V3 technical report (arXiv 2412.19437): section 3.2, 2048 H800 GPUs, 16-way PP, 64-way EP over 8
  nodes, ZeRO-1 DP, no TP; section 4.2, sequence length 4K, batch size 15360 sequences (the report gives no
  micro-batch size: 1 sequence is used). H800 memory 80 GB.
- all-to-all of one MoE layer per direction: tokens x top_k x d_model x bytes x (1 - 1/EP) under uniform
  routing; DeepSeek-V2 (arXiv 2405.04434, section 2.2.2) device-limited routing sends a token to at most M = 3
  devices.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from moezoo.cli import main
from moezoo.graph import ROUTER, lower
from moezoo.plan import (
    GPUS,
    PlanError,
    copies_per_token,
    layer_activations,
    make_layout,
    moe_layer_a2a_bytes,
    plan,
    stage_params,
    state_bytes,
)
from moezoo.spec import load_spec
from moezoo.spec.loader import load_spec_text
from moezoo.zoo import resolve_spec


def zoo(name: str, *overrides: str):
    return load_spec(resolve_spec(name), overrides).spec


# A dense GPT in Korthikanti et al.'s setting: MHA, FFN 4h, GeLU (not gated), LayerNorm, untied.
GPT = """
name: gpt_dense
family: gpt
description: "dense GPT test model"
vocab_size: 51200
model_dim: 2048
num_layers: 24
max_seq_len: 2048
norm: {kind: layernorm}
embedding: {tied: false}
position: {kind: rope}
attention: {kind: mha, num_heads: 16}
ffn: {hidden_dim: 8192, activation: gelu}
"""

# A dense Llama-style GPT (RMSNorm, SwiGLU, GQA) for the Megatron weight/optimizer anchor.
LLAMA = """
name: llama_dense
family: llama
description: "dense Llama-style test model"
vocab_size: 32000
model_dim: 4096
num_layers: 32
norm: {kind: rmsnorm}
embedding: {tied: false}
position: {kind: rope}
attention: {kind: gqa, num_heads: 32, num_kv_heads: 8}
ffn: {hidden_dim: 11008, activation: swiglu}
"""


def megatron_weight_and_optimizer_bytes(spec, *, tp: int, pp: int, dp: int, distributed_optimizer: bool) -> float:
    """Megatron-LM compute_weight_and_optimizer_memory (commit 00caa53a), written out for a moezoo spec."""
    h, V, L = spec.model_dim, spec.vocab_size, spec.num_layers
    norm = 1 if spec.norm.kind == "rmsnorm" else 2
    glu = 3 / 2 if spec.ffn.num_matrices == 3 else 1
    att = spec.attention
    if att.kind == "mla":
        d_qk = att.qk_nope_head_dim + att.qk_rope_head_dim
        q = att.q_lora_rank * (h + att.num_heads * d_qk + norm)
        attn = (q + att.kv_lora_rank * (h + att.num_heads * (att.qk_nope_head_dim + att.v_head_dim) + norm)
                + h * att.qk_rope_head_dim + att.num_heads * att.v_head_dim * h)
    else:
        d = att.head_dim or h // att.num_heads
        kv = att.num_kv_heads or att.num_heads
        attn = 2 * h * h * (1 + kv / att.num_heads) * (d * att.num_heads / h)
    dense_layer = 2 * h * (spec.ffn.hidden_dim * glu + norm) + attn
    if spec.moe is not None:
        ex = spec.moe.experts
        shared = ex.num_shared * (ex.shared_hidden_dim or ex.hidden_dim)
        moe_layer = 2 * h * (ex.hidden_dim * ex.num_routed * glu + shared * glu + norm) + attn
    else:
        moe_layer = 0
    n_moe = sum(spec.is_moe_layer(i) for i in range(L))
    block = dense_layer * (L - n_moe) + moe_layer * n_moe + norm * h
    mtp = 0
    if spec.mtp is not None:
        mtp = (moe_layer if spec.is_moe_layer(L - 1) else dense_layer) * spec.mtp.depth
    shard = (block / pp + mtp + h * V) / tp
    if not spec.embedding.tied and pp == 1:
        shard += h * V / tp
    return shard * (6 + 12 / dp if distributed_optimizer else 18)


def ours(spec, **kw) -> float:
    """Weights + gradients + optimizer of the most loaded stage (Megatron's "most loaded model shard")."""
    layout = make_layout(spec, **kw)
    return max(s["weights"] + s["gradients"] + s["optimizer"] for s in plan(spec, layout)["stages"])


@pytest.mark.parametrize("zero, dp", [(0, 1), (0, 8), (1, 8), (1, 64)])
def test_weights_and_optimizer_equal_megatron_dense(zero, dp):
    """A dense Llama-style model at TP 1, PP 1: exactly Megatron's bytes (18 per parameter, or 6 + 12/DP)."""
    spec = load_spec_text(LLAMA).spec
    mine = ours(spec, gpus=dp, zero=zero)
    theirs = megatron_weight_and_optimizer_bytes(spec, tp=1, pp=1, dp=dp, distributed_optimizer=zero == 1)
    assert mine == pytest.approx(theirs, rel=1e-12)
    if zero == 0:
        n = sum(p.numel for p in lower(spec).params())
        assert mine == 18 * n  # bf16 weight 2 + fp32 gradient 4 + fp32 master 4 + Adam 8


def test_weights_and_optimizer_megatron_tp_and_pp():
    """Megatron divides every tensor by TP and puts (block / PP + embedding) on the most loaded shard. moezoo
    keeps norm vectors whole on each TP rank and places layers exactly: the last stage holds its 8 layers, the
    final norm and the head. The difference is exactly the vectors' (1 - 1/TP) share and 3/4 of the final norm."""
    spec = load_spec_text(LLAMA).spec
    h, L = spec.model_dim, spec.num_layers
    vectors_per_layer = 2 * h  # two RMSNorm weights per layer
    tp, pp, dp = 4, 4, 2
    mine = ours(spec, gpus=tp * pp * dp, tp=tp, pp=pp, zero=1)
    theirs = megatron_weight_and_optimizer_bytes(spec, tp=tp, pp=pp, dp=dp, distributed_optimizer=True)
    per_param = 6 + 12 / dp
    replicated = (vectors_per_layer * L / pp + h) * (1 - 1 / tp)  # last stage: its layers' norms + final norm
    final_norm_share = h * (1 - 1 / pp) / tp  # Megatron spreads the final norm over the stages
    assert mine - theirs == pytest.approx((replicated + final_norm_share) * per_param, rel=1e-9)


def test_weights_and_optimizer_megatron_deepseek_v3():
    """DeepSeek-V3 at TP 1, PP 1, EP 1: Megatron's formula leaves out the router (E x h per MoE layer, 58 + 1
    MTP) and the MTP module's eh_proj (2h x h) and its three norms; everything else is equal."""
    spec = zoo("deepseek_v3")
    h = spec.model_dim
    for zero, dp in ((0, 1), (1, 16)):
        mine = ours(spec, gpus=dp, zero=zero)
        theirs = megatron_weight_and_optimizer_bytes(spec, tp=1, pp=1, dp=dp, distributed_optimizer=zero == 1)
        router = sum(p.numel for p in lower(spec).params(mtp=None) if p.component == ROUTER)
        assert router == 256 * h * 59
        missing = router + 2 * h * h + 3 * h
        assert mine - theirs == pytest.approx(missing * (18 if zero == 0 else 6 + 12 / dp), rel=1e-9)


def test_zero_stages_shard_what_they_say():
    spec = zoo("mixtral_8x7b")
    base = {"gpus": 16, "ep": 8}
    by = {z: plan(spec, make_layout(spec, zero=z, **base))["per_gpu"] for z in (0, 1, 2, 3)}
    p = by[0]["params"]
    dense, expert = p["dense"], p["expert"]
    assert by[0]["optimizer"] == pytest.approx(12 * (dense + expert), rel=1e-6)
    # ZeRO-1: optimizer over 16 ranks for dense tensors, over 16 / 8 = 2 for experts
    assert by[1]["optimizer"] == pytest.approx(12 * (dense / 16 + expert / 2), rel=1e-6)
    assert by[1]["gradients"] == by[0]["gradients"]
    assert by[2]["gradients"] == pytest.approx(4 * (dense / 16 + expert / 2), rel=1e-6)
    assert by[3]["weights"] == pytest.approx(2 * (dense / 16 + expert / 2), rel=1e-6)
    # experts are split over EP: Mixtral holds 1 of 8 experts per layer on each GPU
    assert expert == 32 * 3 * 4096 * 14336


# --------------------------------------------------------------------------- activations (Korthikanti et al.)


@pytest.mark.parametrize("tp", [1, 2, 8])
def test_activations_per_layer_korthikanti(tp):
    spec = load_spec_text(GPT).spec
    s, b, h, a = 2048, 4, spec.model_dim, spec.attention.num_heads
    kw = {"gpus": tp, "tp": tp, "micro_batch": b, "seq_len": s, "dropout": True}
    lay = make_layout(spec, recompute="none", **kw)
    none = sum(layer_activations(spec, 0, lay).values())
    assert none == pytest.approx((34 * s * b * h + 5 * a * s * s * b) / tp)
    selective = sum(layer_activations(spec, 0, make_layout(spec, recompute="selective", **kw)).values())
    assert selective == pytest.approx(34 * s * b * h / tp)
    full = sum(layer_activations(spec, 0, make_layout(spec, recompute="full", **kw)).values())
    assert full == pytest.approx(2 * s * b * h / tp)


def test_activations_in_flight_1f1b():
    """1F1B: stage i holds min(pp - i, m) micro-batches; the first stage pp of them."""
    spec = load_spec_text(GPT).spec
    lay = make_layout(spec, gpus=4, pp=4, global_batch=16, recompute="selective")
    rep = plan(spec, lay)
    assert [s["activations"]["in_flight_micro_batches"] for s in rep["stages"]] == [4, 3, 2, 1]
    few = plan(spec, make_layout(spec, gpus=4, pp=4, global_batch=2))
    assert [s["activations"]["in_flight_micro_batches"] for s in few["stages"]] == [2, 2, 2, 1]
    assert rep["per_step"]["pipeline"]["bubble_fraction"] == pytest.approx(3 / (16 + 3))


# --------------------------------------------------------------------------- DeepSeek-V3 fits, EP 1 / PP 1 does not

V3_STAGES = "3," + "4," * 14 + "2"  # 61 layers over 16 stages; the first and last stages also hold embedding / head + MTP


def test_deepseek_v3_layout_fits_80gb():
    spec = zoo("deepseek_v3")
    lay = make_layout(spec, gpus=2048, pp=16, pp_layers=V3_STAGES, ep=64, zero=1, recompute="full",
                      micro_batch=1, seq_len=4096, global_batch=15360, gpu="h800")
    assert (lay.tp, lay.dp, lay.micro_batches) == (1, 128, 120)
    rep = plan(spec, lay)
    assert GPUS["h800"][0] == 80 * 10**9
    assert rep["per_gpu"]["fits"] and rep["per_gpu"]["total"] < 40e9
    # 256 experts over 64 ranks: 4 experts per MoE layer on each GPU, optimizer state over 128 / 64 = 2 ranks
    assert rep["layout"]["expert_dp"] == 2
    expert_per_layer = 3 * 7168 * 2048 * 4
    assert rep["stages"][1]["params"]["expert"] == 4 * expert_per_layer


def test_deepseek_v3_without_ep_and_pp_does_not_fit():
    spec = zoo("deepseek_v3")
    lay = make_layout(spec, gpus=64, pp=1, ep=1, zero=1, recompute="full", micro_batch=1, seq_len=4096,
                      global_batch=15360, gpu="h800")
    rep = plan(spec, lay)
    assert not rep["per_gpu"]["fits"]
    # every GPU holds all 682.6B parameters: bf16 weights + fp32 gradients alone are 6 bytes each
    assert rep["per_gpu"]["weights"] + rep["per_gpu"]["gradients"] == pytest.approx(6 * (671_026_404_352 + 11_610_067_968))


# --------------------------------------------------------------------------- all-to-all


@pytest.mark.parametrize("name, ep", [("mixtral_8x7b", 8), ("deepseek_v3", 64), ("deepseek_v3", 8)])
def test_all_to_all_uniform_routing(name, ep):
    spec = zoo(name)
    lay = make_layout(spec, gpus=ep, ep=ep, seq_len=4096)
    k = spec.moe.router.top_k
    tokens = 4096
    assert moe_layer_a2a_bytes(spec, lay, tokens) == pytest.approx(tokens * k * spec.model_dim * 2 * (1 - 1 / ep))
    a2a = plan(spec, lay)["per_step"]["all_to_all"]
    per_pass = a2a["per_layer_per_direction"] * a2a["moe_layers"] * lay.micro_batches
    assert a2a["dispatch_forward"] == a2a["combine_backward"] == pytest.approx(per_pass)
    assert a2a["sent"] == a2a["received"] == pytest.approx(4 * per_pass)


def test_device_limited_routing_caps_copies_at_m():
    """DeepSeek-V2: 160 experts in 8 groups (one per device at EP 8), top-6 inside the best M = 3 groups. Sent
    once per destination device, a token makes at most 3 copies; without the limit, about 4.4."""
    spec = zoo("deepseek_v2")
    lay = make_layout(spec, gpus=8, ep=8, dispatch="device")
    c = copies_per_token(spec, lay)
    n = 3 * 20
    assert c["cap"] == 3
    assert c["copies"] == pytest.approx(3 * (1 - math.comb(n - 20, 6) / math.comb(n, 6)))
    assert c["copies"] <= 3
    free = zoo("deepseek_v2", "moe.router.groups=null")
    uniform = copies_per_token(free, make_layout(free, gpus=8, ep=8, dispatch="device"))["copies"]
    assert uniform == pytest.approx(8 * (1 - math.comb(140, 6) / math.comb(160, 6)))
    assert uniform > 3
    # per-expert dispatch ignores the device limit: top_k copies
    assert copies_per_token(spec, make_layout(spec, gpus=8, ep=8))["copies"] == 6
    tokens = 4096
    assert moe_layer_a2a_bytes(spec, lay, tokens) <= tokens * 3 * spec.model_dim * 2 * (1 - 1 / 8)


# --------------------------------------------------------------------------- invalid layouts and the CLI


@pytest.mark.parametrize("kw, words", [
    ({"gpus": 10, "tp": 4}, "not a multiple"),
    ({"gpus": 8, "ep": 3}, "does not divide the 8 routed experts"),
    ({"gpus": 4, "ep": 8}, "does not divide dp x cp"),
    ({"gpus": 3, "pp": 3}, "does not divide the 32 layers"),
    ({"gpus": 64, "pp": 64}, "leaves a stage empty"),
    ({"gpus": 2, "pp": 2, "pp_layers": "32,0"}, "leaves a stage empty"),
    ({"gpus": 2, "pp": 2, "pp_layers": "16,15"}, "sums to 31"),
    ({"gpus": 6, "tp": 6}, "does not divide the 32 attention heads"),
    ({"gpus": 16, "tp": 16, "seq_len": 4096}, "does not divide the 8 KV heads"),
    ({"gpus": 8, "global_batch": 12}, "not a multiple of micro-batch x dp"),
    ({"gpus": 8, "dp": 4}, "disagrees with --gpus"),
])
def test_invalid_layouts(kw, words):
    with pytest.raises(PlanError, match=words):
        make_layout(zoo("mixtral_8x7b"), **kw)


def run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["moezoo", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cli_plan_json(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "plan", "mixtral_8x7b", "--gpus", "16", "--ep", "8", "--tp", "2",
                       "--recompute", "selective", "--json")
    assert code == 0
    rep = json.loads(out)
    assert rep["layout"]["dp"] == 8 and rep["layout"]["ep"] == 8
    assert set(rep["per_gpu"]) >= {"params", "weights", "gradients", "optimizer", "activations", "total", "fits"}
    assert set(rep["per_step"]) == {"pipeline", "all_to_all", "data_parallel"}
    assert rep["per_gpu"]["activations"]["per_micro_batch"]["routed_experts"] > 0


def test_cli_plan_text_and_errors(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "plan", "deepseek_v3", "--gpus", "2048", "--pp", "16", "--pp-layers",
                       V3_STAGES, "--ep", "64", "--recompute", "full", "--global-batch", "15360", "--gpu", "h800")
    assert code == 0 and "fits" in out and "all-to-all" in out and "bubble" in out
    code, out, err = run(monkeypatch, capsys, "plan", "deepseek_v3", "--gpus", "2048", "--pp", "16", "--ep", "64")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "error: --pp 16 does not divide the 61 layers" in err
    assert "--pp-layers 3,4,4,4,4,4,4,4,4,4,4,4,4,4,4,2" in err
    code, _, err = run(monkeypatch, capsys, "plan", "mixtral_8x7b", "--zero", "5")
    assert code == 2 and "--zero" in err
    code, _, err = run(monkeypatch, capsys, "plan", "mixtral_8x7b", "--set", "moe.router.top_k=9")
    assert code == 1 and "top_k" in err and "Traceback" not in err


def test_cli_plan_plots(monkeypatch, capsys, tmp_path):
    code, _, _err = run(monkeypatch, capsys, "plan", "mixtral_8x7b", "--gpus", "8", "--ep", "8", "--plot",
                       str(tmp_path))
    assert code == 0
    for name in ("mixtral_8x7b_plan_memory.png", "mixtral_8x7b_seq_len.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_table_is_the_cli_choice_list():
    from moezoo.cli import GPU_CHOICES

    assert set(GPU_CHOICES) == set(GPUS)
    assert all(size >= 40 * 10**9 and source for size, source in GPUS.values())


def test_tp_must_divide_the_expert_width():
    spec = zoo("mixtral_8x7b", "moe.experts.hidden_dim=14337")
    with pytest.raises(PlanError, match="does not divide the expert width 14337"):
        make_layout(spec, gpus=2, tp=2)


def test_cli_import_does_not_load_the_planner():
    """The planner is imported inside the command, so `import moezoo.cli` stays as fast as before."""
    code = "import sys, moezoo.cli; print('moezoo.plan' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_stage_params_add_up():
    """Summed over the stages and the TP x EP ranks of one pipeline, the held tensors are the model (plus the
    head's copy of a tied embedding on the last stage)."""
    spec = zoo("deepseek_v3")
    lay = make_layout(spec, gpus=16, pp=16, pp_layers=V3_STAGES, ep=1)
    total = sum(s.dense + s.expert for s in stage_params(spec, lay))
    assert total == 671_026_404_352 + 11_610_067_968
    st = state_bytes(stage_params(spec, lay)[0], lay)
    assert set(st) == {"weights", "gradients", "optimizer"}


@pytest.mark.parametrize("args", [
    ("deepseek_v3", "--gpus", "2048", "--pp", "16", "--pp-layers", V3_STAGES, "--ep", "64", "--zero", "1",
     "--recompute", "full", "--micro-batch", "1", "--seq-len", "4096", "--global-batch", "15360", "--gpu", "h800"),
    ("mixtral_8x7b", "--gpus", "16", "--tp", "2", "--ep", "8", "--zero", "1", "--recompute", "selective",
     "--micro-batch", "1", "--seq-len", "4096", "--global-batch", "512"),
])
def test_docs_planning_quotes_real_runs(monkeypatch, capsys, args):
    """docs/planning.md pastes these two runs (at 100 columns); a change of the planner must update it."""
    from pathlib import Path

    from rich.console import Console

    from moezoo import cli

    monkeypatch.setattr(cli, "out_console", Console(highlight=False, soft_wrap=True, width=100))
    code, out, _ = run(monkeypatch, capsys, "plan", *args)
    assert code == 0
    quoted = "\n".join(("    " + line) if line else "" for line in out.rstrip("\n").splitlines())
    assert quoted in (Path(__file__).resolve().parent.parent / "docs" / "planning.md").read_text()
