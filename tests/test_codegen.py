"""Generated model.py: the module contract, training signal, and the grouped-GEMM path vs the reference loop.

Expected numbers come from the accounting (moezoo.accounting), itself checked against MODELS.md in
test_accounting.py: here the generated code must agree with it exactly.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import torch

from moezoo.accounting import account
from moezoo.codegen.tiny import tiny_spec
from moezoo.graph import lower
from moezoo.spec import load_spec

from conftest import REPO, buildable_specs

BUILDABLE = buildable_specs()


def test_the_decoder_families_of_the_issue_are_buildable():
    for name in ["mixtral_8x7b", "mixtral_8x22b", "dbrx", "qwen1_5_moe_a2_7b", "qwen2_57b_a14b", "deepseek_moe_16b",
                 "deepseek_v2", "deepseek_v2_lite", "deepseek_v3"]:
        assert name in BUILDABLE


@pytest.mark.parametrize("name", BUILDABLE)
def test_full_size_model_on_meta_has_exactly_the_reported_parameters(name, model_module, built):
    m = model_module(name, tiny=False)
    spec = load_spec(REPO / "specs" / f"{name}.yaml").spec
    report = account(spec)
    start = time.perf_counter()
    with torch.device("meta"):
        model = m.Model(m.ModelConfig())
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"meta construction took {elapsed:.1f}s"
    assert all(p.is_meta for p in model.parameters())
    n = sum(p.numel() for p in model.parameters())
    assert n == report["params"]["total"] + report["params"]["mtp"]
    # Tensor by tensor: the generated state-dict names and shapes are the model graph's.
    expected = {p.name: p.shape for p in lower(spec).params(mtp=None)}
    got = {k: tuple(v.shape) for k, v in model.named_parameters()}
    assert got == expected


def test_deepseek_v3_full_size_counts(model_module):
    """DeepSeek-V3: 671,026,404,352 main + 11,610,067,968 MTP (MODELS.md, the HF meta-device count + formula)."""
    m = model_module("deepseek_v3", tiny=False)
    with torch.device("meta"):
        model = m.Model(m.ModelConfig())
    main = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("mtp."))
    mtp = sum(p.numel() for n, p in model.named_parameters() if n.startswith("mtp."))
    assert (main, mtp) == (671_026_404_352, 11_610_067_968)
    buffers = dict(model.named_buffers())
    assert sum(b.numel() for k, b in buffers.items() if k.endswith("e_score_correction_bias")) == 59 * 256  # 58 + MTP


def _batch(vocab: int, B: int = 4, T: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (B, T + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


@pytest.mark.parametrize("name", BUILDABLE)
def test_tiny_forward_backward_and_gradients(name, model_module):
    m = model_module(name)
    torch.manual_seed(0)
    model = m.Model(m.ModelConfig())
    model.train()
    x, y = _batch(model.config.vocab_size, B=8, T=32)
    out = model(x, labels=y)
    assert out.logits.shape == (8, 32, model.config.vocab_size)
    assert torch.isfinite(out.loss)
    for key, value in out.losses.items():
        assert torch.isfinite(value), key
    assert torch.allclose(out.loss, sum(out.losses.values()))
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", BUILDABLE)
def test_adamw_steps_halve_the_loss_on_a_fixed_batch(name, model_module):
    m = model_module(name)
    torch.manual_seed(0)
    model = m.Model(m.ModelConfig())
    # The tiny encoder-decoders are deeper (ST-MoE: 8 + 8 layers to keep its every-4th MoE pattern) and must
    # learn cross-attention alignment, so they get a smaller batch and 80 steps. They are measured in training
    # mode: their eval capacity factor routes tokens that were dropped (and so never trained) during training.
    encdec = hasattr(model, "encoder")
    x, y = _batch(model.config.vocab_size, B=2 if encdec else 4, T=32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)

    def eval_loss() -> float:  # decoder-only: eval mode (no routing noise)
        model.train(encdec)
        with torch.no_grad():
            loss = model(x, labels=y).losses["lm"].item()
        model.train()
        return loss

    first = eval_loss()
    for _ in range(80 if encdec else 30):
        out = model(x, labels=y)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if hasattr(model, "update_router_bias"):
            model.update_router_bias()
    last = eval_loss()
    assert last < first / 2, f"lm loss {first:.3f} -> {last:.3f}"


@pytest.mark.parametrize("name", BUILDABLE)
def test_grouped_mm_path_equals_the_reference_loop(name, model_module):
    """float32, forward and backward within 1e-5."""
    m = model_module(name)
    results = []
    for impl in ("grouped_mm", "loop"):
        torch.manual_seed(0)
        model = m.Model(m.ModelConfig(expert_impl=impl))
        model.eval()  # no routing noise; capacity uses the eval factor
        x, y = _batch(model.config.vocab_size, B=4, T=24, seed=1)
        out = model(x, labels=y)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.logits.detach(), out.loss.detach(), grads))
    (l1, loss1, g1), (l2, loss2, g2) = results
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss1, loss2, atol=1e-5, rtol=1e-5)
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], atol=1e-5, rtol=1e-4, msg=lambda s: f"{k}: {s}")


@pytest.mark.parametrize("name", BUILDABLE)
def test_bf16_autocast_runs_both_expert_paths(name, model_module):
    """Mixed precision as train.py runs it (weights float32, matmuls in bf16 autocast), here on CPU: the whole
    model's loss and gradients are finite, and one MoE layer gives the same output on both expert paths (the
    router runs in float32 with autocast off, so both route alike; bf16 rounding apart, within 2e-2 of the
    output's size). The same checks ran on an H100 (docs/performance.md)."""
    m = model_module(name)
    torch.manual_seed(0)
    model = m.Model(m.ModelConfig())
    x, y = _batch(model.config.vocab_size, B=2, T=16, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, labels=y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    moe = next(mod for mod in model.modules() if type(mod).__name__ == "MoE").eval()
    h = torch.randn(2, 16, model.config.model_dim)
    outs = []
    for impl in ("grouped_mm", "loop"):
        moe.experts.impl = impl
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs.append(moe(h)[0].float())
    assert (outs[0] - outs[1]).abs().max() <= 2e-2 * outs[1].abs().max()


def test_torch_compile_of_a_moe_layer_matches_eager(model_module):
    """torch.compile traces the grouped GEMM path: in float32 it must take the per-expert fallback, since the
    grouped_mm shape check under compile accepts bf16 only (eager CPU takes float32). The aot_eager backend
    traces with fake tensors, where that check lives, and needs no C++ compiler; inductor ran on an H100."""
    m = model_module("mixtral_8x7b")
    torch.manual_seed(0)
    moe = m.MoE(m.ModelConfig()).eval()
    for mod in moe.modules():
        if hasattr(mod, "reset_parameters") and mod is not moe:
            mod.reset_parameters()
    h = torch.randn(2, 16, moe.router.weight.shape[1])
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(moe, backend="aot_eager")(h)[0], moe(h)[0], atol=1e-5, rtol=1e-5)


def test_generate_greedy_sampling_and_eos(model_module):
    """deepseek_v3 tiny: top_k=1 sampling is greedy; a seeded generator repeats a sampled run; rows stop at EOS
    (then padded with it); the model's train/eval mode is restored. Parity of greedy decoding with
    transformers: tests/test_hf_parity.py::test_greedy_generation_matches_transformers."""
    m = model_module("deepseek_v3")
    torch.manual_seed(0)
    model = m.Model(m.ModelConfig()).train()
    prompt, _ = _batch(model.config.vocab_size, B=2, T=6)
    greedy = model.generate(prompt, max_new_tokens=8)
    assert greedy.shape == (2, 8) and model.training
    assert torch.equal(model.generate(prompt, 8, temperature=0.7, top_k=1), greedy)
    runs = [model.generate(prompt, 8, temperature=1.5, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    eos = int(greedy[0, 2])
    out = model.generate(prompt, 8, eos_token_id=eos)
    first = int((out[0] == eos).nonzero()[0])
    assert (out[0, first:] == eos).all() and torch.equal(out[0, :first], greedy[0, :first])


def test_lightning_attention_blocks_equal_the_direct_sum(model_module):
    """MiniMax tiny, 40 tokens in blocks of 16 (two full blocks and a partial one): the blockwise computation
    equals out_t = sum_{j<=t} exp(-s_h (t - j)) (q_t . k_j) v_j written out directly (then norm, gate, wo)."""
    m = model_module("minimax_text_01")
    torch.manual_seed(0)
    model = m.Model(m.ModelConfig())
    att = next(mod for mod in model.modules() if type(mod).__name__ == "LightningAttention")
    assert att.block_size == 16
    x = torch.randn(2, 40, model.config.model_dim)
    B, T, H, d = 2, 40, att.num_heads, att.head_dim
    q, k, v = (t.transpose(1, 2) for t in torch.nn.functional.silu(att.wqkv(x)).view(B, T, H, 3 * d).split(d, -1))
    pos = torch.arange(T, dtype=torch.float32)
    gap = pos[:, None] - pos[None, :]
    decay = torch.where(gap >= 0, torch.exp(-att.slopes(x.device).view(H, 1, 1) * gap), torch.zeros(()))  # (H, T, T)
    direct = ((q @ k.transpose(-1, -2)) * decay) @ v
    direct = att.wo(torch.sigmoid(att.w_gate(x)) * att.out_norm(direct.transpose(1, 2).reshape(B, T, H * d)))
    with torch.no_grad():
        torch.testing.assert_close(att(x), direct, atol=1e-5, rtol=1e-5)


def test_flop_counter_equals_the_lightning_accounting_over_several_blocks(model_module):
    """The analytic lightning FLOPs (intra-block pairs, state reads after the first block, updates before the
    last) at 40 tokens = 16 + 16 + 8, against FlopCounterMode on the generated model."""
    from torch.utils.flop_counter import FlopCounterMode

    from moezoo.accounting import convention

    m = model_module("minimax_text_01")
    model = m.Model(m.ModelConfig(expert_impl="loop", attn_impl="math")).eval()
    x, _ = _batch(model.config.vocab_size, B=1, T=40)
    spec = tiny_spec(load_spec(REPO / "specs" / "minimax_text_01.yaml").spec)
    expected = account(spec, seq_len=40, conv=convention("noncausal"))["flops"]["forward_per_token"] * 40
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert counter.get_total_flops() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", BUILDABLE)
def test_flop_counters_equal_the_analytic_forward_flops(name, model_module):
    """FlopCounterMode (2 per multiply-add) and fvcore (1 per multiply-add) on the reference loop and the
    explicit attention math equal the analytic non-causal forward FLOPs (the counters see the full T x T
    score matrix, hence the `noncausal` convention), main model without MTP."""
    from torch.utils.flop_counter import FlopCounterMode

    m = model_module(name)
    torch.manual_seed(0)
    kwargs = dict(expert_impl="loop")
    if hasattr(m.ModelConfig(), "attn_impl"):  # specs with sinks / soft-capping always run the explicit math
        kwargs["attn_impl"] = "math"
    if hasattr(m.ModelConfig(), "capacity_factor_eval"):  # count every routed token: no capacity dropping
        kwargs["capacity_factor_eval"] = float(m.ModelConfig().num_experts)
    model = m.Model(m.ModelConfig(**kwargs)).eval()
    B, T = 2, 16
    x, _ = _batch(model.config.vocab_size, B=B, T=T)
    spec = tiny_spec(load_spec(REPO / "specs" / f"{name}.yaml").spec)
    from moezoo.accounting import convention

    expected = account(spec, seq_len=T, conv=convention("noncausal"))["flops"]["forward_per_token"] * B * T
    encdec = spec.is_encoder_decoder  # one "token" = one encoder + one decoder position (S = T for both)
    args = (x, x) if encdec else (x,)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    assert counter.get_total_flops() == pytest.approx(expected, rel=1e-9)

    from fvcore.nn import FlopCountAnalysis

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *ids):
            return self.inner(*ids).logits

    with torch.no_grad():
        analysis = FlopCountAnalysis(LogitsOnly(model), args)
        # fvcore charges layer norms element-wise; the convention counts matmuls only
        analysis.set_op_handle("aten::layer_norm", lambda inputs, outputs: Counter())
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        assert 2 * analysis.total() == pytest.approx(expected, rel=1e-9)


def test_build_is_deterministic_and_standalone(tmp_path):
    from moezoo.codegen import render

    loaded = load_spec(REPO / "specs" / "deepseek_v3.yaml")
    a = render(loaded).files
    b = render(load_spec(REPO / "specs" / "deepseek_v3.yaml")).files
    assert a == b
    for fname, text in a.items():
        if fname.endswith(".py"):
            assert "import moezoo" not in text and "from moezoo" not in text
            assert str(REPO) not in text  # no absolute paths
    header = a["model.py"].splitlines()[0]
    assert header.startswith("# Generated by moezoo ") and loaded.sha256 in header


INJECTIONS = [
    'evil """; import sys; sys.exit(3); """',
    "back\\slash \\\"\"\" and '''quotes''' __import__('os').system('exit 3')",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_spec_text_cannot_inject_code(payload, tmp_path):
    import yaml

    from conftest import import_file
    from moezoo.codegen import render, write
    from moezoo.spec import load_spec_text

    raw = yaml.safe_load((REPO / "specs" / "mixtral_8x7b.yaml").read_text())
    raw["description"] = payload
    raw["reference"]["sources"] = [payload]
    loaded = load_spec_text(yaml.safe_dump(raw), "evil.yaml")
    target = write(render(loaded, tiny=True), tmp_path)
    module = import_file(target / "model.py", "gen_injection_" + str(abs(hash(payload))))  # must not exit
    assert module.Model.__doc__ is not None
    import ast

    tree = ast.parse((target / "model.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "__import__"]
    assert not calls


def test_names_cannot_escape_the_output_directory(tmp_path):
    from moezoo.codegen.build import BuildError, target_dir
    from moezoo.spec import SpecError, load_spec_text

    text = (REPO / "specs" / "mixtral_8x7b.yaml").read_text()
    for bad in ["../evil", "a/b", "x'; import os", "Mixtral"]:
        with pytest.raises(SpecError) as err:
            load_spec_text(text, "x.yaml", overrides=[f"name={bad}"])
        assert "name" in str(err.value)
    with pytest.raises(BuildError):
        target_dir(tmp_path, "../escape")


def test_unsupported_features_fail_with_one_clear_message(capsys, tmp_path, monkeypatch):
    import sys

    from moezoo.cli import main

    # every zoo spec builds; a post-norm encoder-decoder is valid but has no generator
    monkeypatch.setattr(sys, "argv", ["moezoo", "build", str(REPO / "specs" / "st_moe_32b.yaml"), "--set",
                                      "norm.placement=post", "-o", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "not supported yet: encoder_decoder with norm.placement post" in err
    assert list(tmp_path.iterdir()) == []


def test_failed_build_leaves_previous_output_untouched(tmp_path, monkeypatch):
    from moezoo.codegen import build as build_mod
    from moezoo.codegen import render, write

    loaded = load_spec(REPO / "specs" / "mixtral_8x7b.yaml")
    result = render(loaded, tiny=True)
    target = write(result, tmp_path)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(build_mod.os, "rename", boom)
    monkeypatch.setattr(build_mod, "_exchange", boom)  # the one-step swap (renameat2) fails the same way
    with pytest.raises(OSError):
        write(result, tmp_path)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["mixtral_8x7b"]  # no temporary directory left behind


def test_check_mode_reports_drift_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import sys

    from moezoo.cli import main

    spec = str(REPO / "specs" / "qwen3_30b_a3b.yaml")

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["moezoo", "build", spec, "--tiny", "-o", str(tmp_path), *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        return exit_.value.code

    assert run("--check") == 1  # nothing built yet
    assert not any(tmp_path.iterdir())
    assert run() == 0
    assert run("--check") == 0
    model = tmp_path / "qwen3_30b_a3b" / "model.py"
    model.write_text(model.read_text().replace("top_k: int = 2", "top_k: int = 3"))
    before = model.read_text()
    capsys.readouterr()
    assert run("--check") == 1
    err = capsys.readouterr().err
    assert "out of date" in err and "top_k: int = 3" in err
    assert model.read_text() == before
