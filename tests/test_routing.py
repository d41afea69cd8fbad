"""Routing unit tests on hand-made scores, run against the generated routers and MoE layers."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import build_spec, import_file


def _router_with_identity_logits(m, **overrides):
    """A generated Router whose logits equal the first E input features (weight = [I | 0])."""
    config = m.ModelConfig(**overrides)
    router = m.Router(config)
    router.reset_parameters()
    with torch.no_grad():
        router.weight.zero_()
        router.weight[:, : config.num_experts] = torch.eye(config.num_experts)
    return router, config


def _inputs(logits: torch.Tensor, dim: int) -> torch.Tensor:
    x = torch.zeros(logits.shape[0], dim)
    x[:, : logits.shape[1]] = logits
    return x


def test_group_limited_routing_never_leaves_the_top_groups(model_module):
    """DeepSeek-V3: groups scored by the sum of their top-2 (biased) scores; experts only from the best groups."""
    m = model_module("deepseek_v3")
    router, cfg = _router_with_identity_logits(m)
    E, G, top = cfg.num_experts, cfg.num_groups, cfg.top_groups
    torch.manual_seed(0)
    logits = torch.randn(512, E) * 3
    with torch.no_grad():
        router.e_score_correction_bias.copy_(torch.randn(E) * 0.1)
        _, indices, _, _ = router(_inputs(logits, cfg.model_dim))
    choice = (logits.sigmoid() + router.e_score_correction_bias).view(-1, G, E // G)
    group_scores = choice.topk(2, dim=-1).values.sum(-1)
    allowed = group_scores.topk(top, dim=-1).indices  # (N, top)
    chosen_groups = indices // (E // G)
    for t in range(logits.shape[0]):
        assert set(chosen_groups[t].tolist()) <= set(allowed[t].tolist())


def test_group_limited_routing_hand_made_case(model_module):
    """8 experts in 4 groups of 2, top-2 groups, k=2. The single best expert (7, score 0.99) sits in a group
    whose partner is poor, so with V3's top-2-sum group score its group loses to groups {0,1} and {2,3}."""
    m = model_module("deepseek_v3")
    router, cfg = _router_with_identity_logits(m)
    assert (cfg.num_experts, cfg.num_groups, cfg.top_groups, cfg.top_k) == (8, 4, 2, 2)
    scores = torch.tensor([[0.80, 0.80, 0.70, 0.75, 0.10, 0.10, 0.01, 0.99]])
    logits = torch.logit(scores)
    with torch.no_grad():
        weights, indices, _, _ = router(_inputs(logits, cfg.model_dim))
    assert sorted(indices[0].tolist()) == [0, 1]  # expert 7 is never reachable
    # Renormalised over the two chosen, then scaled by routed_scaling_factor (2.5).
    torch.testing.assert_close(weights[0], torch.tensor([0.5, 0.5]) * cfg.routed_scaling_factor)


def test_aux_free_bias_changes_the_choice_but_not_the_gates(model_module):
    m = model_module("deepseek_v3")
    router, cfg = _router_with_identity_logits(m, num_groups=1, top_groups=1)
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]])
    x = _inputs(torch.logit(scores), cfg.model_dim)
    with torch.no_grad():
        w0, i0, _, _ = router(x)
        assert i0[0].tolist() == [0, 1]
        router.e_score_correction_bias[7] = 1.0  # makes expert 7 (score 0.2) the first choice
        w1, i1, _, _ = router(x)
    assert i1[0].tolist() == [7, 0]
    expected = torch.tensor([0.2, 0.9]) / 1.1 * cfg.routed_scaling_factor  # from the unbiased scores
    torch.testing.assert_close(w1[0], expected)
    torch.testing.assert_close(w0[0], torch.tensor([0.9, 0.8]) / 1.7 * cfg.routed_scaling_factor)


def test_aux_free_bias_update_moves_against_the_load(model_module):
    m = model_module("deepseek_v3")
    router, cfg = _router_with_identity_logits(m, num_groups=1, top_groups=1)
    router.train()
    logits = torch.zeros(10, cfg.num_experts)
    logits[:, 0] = 5.0
    logits[:, 1] = 4.0  # every token picks experts 0 and 1
    router(_inputs(logits, cfg.model_dim))
    router.update_bias(0.01)
    b = router.e_score_correction_bias
    assert b[0] == b[1] == pytest.approx(-0.01)
    torch.testing.assert_close(b[2:], torch.full((6,), 0.01))
    assert torch.all(router.load == 0)


def test_softmax_router_weights(model_module):
    """Qwen1.5-MoE: softmax over all experts, top-4, no renormalisation; Mixtral: renormalised top-2."""
    q = model_module("qwen1_5_moe_a2_7b")
    router, cfg = _router_with_identity_logits(q)
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, 3.0, 0.2, 0.1]])
    with torch.no_grad():
        w, i, probs, _ = router(_inputs(logits, cfg.model_dim))
    p = logits.softmax(-1)
    assert i[0].tolist() == p.topk(cfg.top_k).indices[0].tolist()
    torch.testing.assert_close(w, p.gather(1, i))
    torch.testing.assert_close(probs, p)

    mx = model_module("mixtral_8x7b")
    router, cfg = _router_with_identity_logits(mx)
    with torch.no_grad():
        w, i, _, _ = router(_inputs(logits, cfg.model_dim))
    assert i[0].tolist() == [5, 0]
    top = torch.tensor([3.0, 2.0])
    torch.testing.assert_close(w[0], top.softmax(-1))  # = softmax, top-2, renormalise
    torch.testing.assert_close(w.sum(-1), torch.ones(1))


@pytest.fixture(scope="module")
def capacity_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("capacity")
    target = build_spec("mixtral_8x7b", out, tiny=True,
                        overrides=("moe.router.capacity={train_factor: 1.0, eval_factor: 2.0, min_capacity: 1}",))
    return import_file(target / "model.py", "gen_mixtral_capacity")


def test_capacity_drops_exactly_the_overflow_in_order(capacity_model):
    """E=8, K=2, N=16 tokens, factor 1.0: capacity C = ceil(16*2/8) = 4. Every token's first choice is expert 0
    and second choice expert 1: only tokens 0-3 keep expert 0, and second choices queue after first choices."""
    m = capacity_model
    cfg = m.ModelConfig()
    moe = m.MoE(cfg)
    moe.router.reset_parameters()
    moe.experts.reset_parameters()
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[:, : cfg.num_experts] = torch.eye(cfg.num_experts)
    N = 16
    logits = torch.full((N, cfg.num_experts), -5.0)
    logits[:, 0], logits[:, 1] = 5.0, 4.0
    logits[12:, 1], logits[12:, 2] = -5.0, 4.0  # tokens 12-15 choose expert 2 second
    captured = {}

    def spy(x, token, expert, gate):
        captured.update(token=token.clone(), expert=expert.clone())
        return torch.zeros_like(x)

    moe.experts.forward = spy
    moe.train()
    _, stats = moe(_inputs(logits, cfg.model_dim).view(1, N, -1))
    capacity = math.ceil(1.0 * N * cfg.top_k / cfg.num_experts)
    assert capacity == 4
    kept = {(t, e) for t, e in zip(captured["token"].tolist(), captured["expert"].tolist())}
    assert {t for t, e in kept if e == 0} == {0, 1, 2, 3}  # first C tokens in order
    assert {t for t, e in kept if e == 1} == {0, 1, 2, 3}
    assert {t for t, e in kept if e == 2} == {12, 13, 14, 15}
    assert stats["dropped"].item() == pytest.approx((2 * N - 12) / (2 * N))
    moe.eval()  # eval factor 2.0: C = 8
    moe(_inputs(logits, cfg.model_dim).view(1, N, -1))
    assert {t for t, e in zip(captured["token"].tolist(), captured["expert"].tolist()) if e == 0} == set(range(8))


def test_dropped_assignments_leave_the_token_to_the_residual(capacity_model):
    """A token whose every expert is over capacity gets a zero MoE output: the block's residual carries it."""
    m = capacity_model
    cfg = m.ModelConfig()
    torch.manual_seed(0)
    moe = m.MoE(cfg)
    moe.router.reset_parameters()
    moe.experts.reset_parameters()
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[:, : cfg.num_experts] = torch.eye(cfg.num_experts)
    N = 16
    logits = torch.full((N, cfg.num_experts), -5.0)
    logits[:, 0], logits[:, 1] = 5.0, 4.0
    x = _inputs(logits, cfg.model_dim) + 0.01 * torch.randn(N, cfg.model_dim)
    moe.train()
    out, _ = moe(x.view(1, N, -1))
    assert torch.all(out[0, 4:] == 0)
    assert torch.all(out[0, :4].abs().sum(-1) > 0)


def test_switch_capacity_factor_two_drops_less_and_dropped_tokens_ride_the_residual(tmp_path):
    """Switch (top-1): C = tokens / experts * factor. On the same batch, factor 2.0 drops fewer tokens than 1.0,
    and a dropped token's MoE output is exactly zero, so the sparse block returns its residual input."""
    results = {}
    for factor in (1.0, 2.0):
        target = build_spec("switch_base_8", tmp_path / str(factor), tiny=True,
                            overrides=(f"moe.router.capacity.eval_factor={factor}",))
        m = import_file(target / "model.py", f"gen_switch_capacity_{int(factor)}")
        torch.manual_seed(0)
        model = m.Model(m.ModelConfig()).eval()
        with torch.no_grad():  # skew the routers so that some experts overflow
            for module in model.modules():
                if isinstance(module, m.Router):
                    module.weight[0] += 0.5
        x = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = model(x, decoder_input_ids=x)
        results[factor] = out.dropped_fraction.item()
        if factor == 1.0:
            layer = next(layer for layer in model.encoder.layers if layer.moe is not None)
            h = torch.randn(1, 64, m.ModelConfig().model_dim)
            captured = {}
            real = layer.moe.experts.forward

            def spy(x_, token, expert, gate):
                captured["token"] = token.clone()
                return real(x_, token, expert, gate)

            layer.moe.experts.forward = spy
            with torch.no_grad():
                moe_out, stats = layer.moe(h)
                block_out, _ = layer.feed_forward(h)
            dropped = sorted(set(range(64)) - set(captured["token"].tolist()))
            assert stats["dropped"].item() > 0 and dropped
            assert torch.all(moe_out[0, dropped] == 0)
            torch.testing.assert_close(block_out[0, dropped], h[0, dropped])  # the residual carries them
    assert results[1.0] > results[2.0]


def test_switch_expert_dropout_acts_only_inside_experts_in_training(tmp_path):
    """Switch's expert dropout (0.4 while fine-tuning, `moe.balance.expert_dropout`): in training two passes of
    one MoE layer differ, only through the expert FFNs (the routing is unchanged, and dense layers get no
    dropout); in evaluation the layer equals the same weights built without it."""
    builds = {}
    for p in (0.0, 0.4):
        target = build_spec("switch_base_8", tmp_path / str(p), tiny=True,
                            overrides=(f"moe.balance.expert_dropout={p}", "moe.router.noise=null",
                                       "moe.router.capacity=null"))
        builds[p] = import_file(target / "model.py", f"gen_switch_dropout_{int(10 * p)}")
    m = builds[0.4]
    assert m.ModelConfig().expert_dropout == 0.4
    torch.manual_seed(0)
    with_dropout = m.Model(m.ModelConfig())
    plain = builds[0.0].Model(builds[0.0].ModelConfig())
    plain.load_state_dict(with_dropout.state_dict())
    moe = next(layer.moe for layer in with_dropout.encoder.layers if layer.moe is not None)
    dense = next(layer.ffn for layer in with_dropout.encoder.layers if layer.moe is None)
    h = torch.randn(2, 16, m.ModelConfig().model_dim)
    with torch.no_grad():
        moe.train()
        (a, sa), (b, sb) = moe(h), moe(h)
        assert not torch.equal(a, b) and torch.equal(sa["load"], sb["load"])
        dense.train()
        assert torch.equal(dense(h), dense(h))
        with_dropout.eval()
        plain.eval()
        x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(with_dropout(x, decoder_input_ids=x).logits, plain(x, decoder_input_ids=x).logits)


def test_st_moe_router_z_loss_and_aux_loss_per_layer(model_module):
    """ST-MoE eq. 5 and Switch eq. 4 per MoE layer (`layer_reduction: sum`): z = w_z * mean_tokens(logsumexp(x W)^2),
    aux = alpha * E * sum_i f_i P_i with f_i the share of top-2 assignments to expert i (summing to 2), recomputed
    here from the router's own logits; the model's losses are the sums over its MoE layers."""
    m = model_module("st_moe_32b")
    torch.manual_seed(0)
    model = m.Model(m.ModelConfig()).eval()
    config = model.config
    assert config.z_loss_weight > 0 and config.aux_loss_weight > 0
    logits_seen = []
    for module in model.modules():
        if isinstance(module, m.Router):
            module.register_forward_hook(lambda mod, args, out: logits_seen.append(out[3]))
    x = torch.randint(0, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(x, decoder_input_ids=x, labels=x)
    z = aux = 0.0
    for logits in logits_seen:
        N, E = logits.shape
        z += config.z_loss_weight * torch.logsumexp(logits.float(), -1).pow(2).mean()
        probs = logits.float().softmax(-1)
        top = probs.topk(config.top_k, dim=-1).indices
        f = torch.zeros(E).index_add_(0, top.flatten(), torch.ones(top.numel())) / N
        aux += config.aux_loss_weight * E * (f * probs.mean(0)).sum()
    assert len(logits_seen) >= 2
    torch.testing.assert_close(out.losses["z"], torch.as_tensor(z), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.losses["aux"], torch.as_tensor(aux), rtol=1e-5, atol=1e-7)


def test_weight_on_input_with_two_experts_scales_each_assignment(tmp_path):
    """Llama 4 applies the routing score to the expert's input. With top_k 2 (allowed by the schema, though the
    released models use 1) each of a token's experts gets its own scaled copy: h = sum_k FFN_{e_k}(g_k x) + shared."""
    target = build_spec("llama4_scout", tmp_path, tiny=True, overrides=("moe.router.top_k=2",))
    m = import_file(target / "model.py", "gen_llama4_top2")
    torch.manual_seed(0)
    moe = m.MoE(m.ModelConfig())
    for mod in moe.modules():
        if hasattr(mod, "reset_parameters") and mod is not moe:
            mod.reset_parameters()
    x = torch.randn(1, 10, m.ModelConfig().model_dim)
    with torch.no_grad():
        out, _ = moe(x)
        weights, indices, _, _ = moe.router(x[0])
        ex = moe.experts
        expected = moe.shared(x[0])
        for t in range(10):
            for k in range(2):
                e, g = int(indices[t, k]), weights[t, k]
                xi = g * x[0, t]
                expected[t] += ex.w_down[e] @ (torch.nn.functional.silu(ex.w_gate[e] @ xi) * (ex.w_up[e] @ xi))
    torch.testing.assert_close(out[0], expected, atol=1e-5, rtol=1e-5)


def test_router_load_counter_survives_a_bf16_cast(model_module):
    """The aux-free load counter is an integer buffer: after model.to(bfloat16) it still counts past 256."""
    m = model_module("deepseek_v3")
    model = m.Model(m.ModelConfig()).to(torch.bfloat16).train()
    router = next(mod for mod in model.modules() if isinstance(mod, m.Router))
    assert router.load.dtype == torch.long
    x = torch.randint(0, model.config.vocab_size, (4, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for _ in range(3):
            model(x)
    assert int(router.load.sum()) == 3 * 4 * 64 * model.config.top_k
