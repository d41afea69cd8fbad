"""Logits parity with transformers, end to end through the user's path.

For each model_type: a tiny random transformers model with every feature of its family switched on is saved
with save_pretrained; `moezoo import-hf` reads its config.json, `moezoo build` generates model.py, and
`Model.from_hf` loads the checkpoint. In float32 and eval mode the logits on random tokens must agree within
1e-4, every MoE layer must pick the same top-k experts, and where transformers computes a balance loss for
the family, ours (pooled over layers, `layer_reduction: hf_pooled`) must equal router_aux_loss_coef times it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from conftest import import_file

from moezoo import cli
from moezoo.codegen import render, write
from moezoo.spec import load_spec

SEQ = 16
VOCAB = 96

# One tiny config per model_type; every routing feature of the family on. Sizes keep each case well under 2 s.
CASES: dict[str, dict] = {
    "mixtral": dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=6, num_experts_per_tok=2, sliding_window=8,
        router_jitter_noise=0.05, router_aux_loss_coef=0.02, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        max_position_embeddings=128,
    ),
    "qwen2_moe": dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=80, moe_intermediate_size=24,
        shared_expert_intermediate_size=40, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        num_experts=6, num_experts_per_tok=3, norm_topk_prob=True, mlp_only_layers=[1], decoder_sparse_step=1,
        use_sliding_window=True, sliding_window=6, max_window_layers=4, qkv_bias=True, router_aux_loss_coef=0.01,
        max_position_embeddings=128,
    ),
    "qwen3_moe": dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=80, moe_intermediate_size=24, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=24, num_experts=6, num_experts_per_tok=2,
        norm_topk_prob=True, decoder_sparse_step=2, attention_bias=True, use_sliding_window=True, sliding_window=7,
        router_aux_loss_coef=0.01, max_position_embeddings=128,
    ),
    "olmoe": dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=32, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=4, num_experts=6, num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=0.6,
        attention_bias=True, router_aux_loss_coef=0.01, max_position_embeddings=128,
    ),
    "gpt_oss": dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=32, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=24, num_local_experts=6, num_experts_per_tok=2, sliding_window=5,
        swiglu_limit=0.4, router_aux_loss_coef=0.05, max_position_embeddings=256,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 8.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 32},
    ),
    "deepseek_v2": dict(  # V2-Lite style: no query compression; device-limited groups, scaling, dense prefix
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2,
        first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
        v_head_dim=12, topk_method="group_limited_greedy", n_group=4, topk_group=2, routed_scaling_factor=2.0,
        max_position_embeddings=256,
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
                         "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707},
    ),
    "deepseek_v3": dict(  # query compression, sigmoid + bias, top-2-sum groups, renormalise, scaling, dense prefix
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=3,
        first_k_dense_replace=1, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
        v_head_dim=12, n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True,
        num_nextn_predict_layers=0, max_position_embeddings=256,
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
                         "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
    ),
    "dbrx": dict(  # MODELS.md 4.1: rope_theta both in attn_config and rope_parameters, or transformers uses 1e4
        vocab_size=VOCAB, d_model=64, n_heads=4, n_layers=3, max_seq_len=128,
        attn_config=dict(kv_n_heads=2, clip_qkv=0.3, rope_theta=500000.0),
        ffn_config=dict(ffn_hidden_size=32, moe_num_experts=6, moe_top_k=2, moe_jitter_eps=0.01, moe_loss_weight=0.05,
                        moe_normalize_expert_weights=1.0),
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    ),
    "minimax": dict(  # lightning layers 0 and 2 (blocks of 6: 6 + 6 + 4 tokens), softmax layers 1 and 3, post-norm alpha 1.7
        vocab_size=VOCAB, hidden_size=64, intermediate_size=32, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2, block_size=6,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        full_attn_alpha_factor=1.7, linear_attn_alpha_factor=1.7, mlp_alpha_factor=1.7, router_aux_loss_coef=0.02,
        max_position_embeddings=128, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    ),
    "llama4_text": dict(  # NoPE layer 3 with temperature tuning, chunked rope layers with L2 QK-norm, MoE in 1 and 3
        vocab_size=VOCAB, hidden_size=64, intermediate_size=32, intermediate_size_mlp=48, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=1,
        interleave_moe_layer_step=2, attention_chunk_size=6, use_qk_norm=True, attn_temperature_tuning=True,
        floor_scale=4, attn_scale=0.3, max_position_embeddings=256,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
    ),
}
# The other side of MLA: V2 with query compression, V3 without it and with the rotate-half rope layout.
CASES["deepseek_v2+q_lora"] = {**CASES["deepseek_v2"], "q_lora_rank": 24}
CASES["deepseek_v3+no_q_lora+rotate_half"] = {**CASES["deepseek_v3"], "q_lora_rank": None, "rope_interleave": False}
CASES["mixtral+tied"] = {**CASES["mixtral"], "tie_word_embeddings": True}  # the checkpoint has no lm_head
AUX_LOSS = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "gpt_oss", "dbrx", "minimax"}  # families transformers computes it for


def hf_model(case: str):
    model_type = case.split("+")[0]
    config = transformers.AutoConfig.for_model(model_type, **CASES[case], initializer_range=0.1)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).float()
    with torch.no_grad():  # parameters that initialise to constants: make them matter
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "layernorm.weight", "norm_1.weight", "norm_2.weight", "norm_f.weight")):
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith(("sinks", ".bias")):
                p.normal_(0.0, 0.3)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.normal_(0.0, 0.05)
    return model.eval()


def router_modules(model) -> list[torch.nn.Module]:
    names = ("TopKRouter", "TopkRouter", "DbrxRouter", "Llama4Router")
    return [m for m in model.modules() if type(m).__name__.endswith(names)]


def hf_topk(model, model_type: str, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and, per MoE layer, the sorted top-k expert indices transformers chose."""
    picks: list[torch.Tensor] = []

    def hook(module, args, out):
        if model_type == "dbrx":  # DbrxRouter returns logits; DbrxFFN takes softmax -> top-k of them
            k = model.config.ffn_config.moe_top_k
            picks.append(out.softmax(-1).topk(k, dim=-1).indices.sort(-1).values)
        elif model_type == "llama4_text":  # (scores, logits): top-k of the logits
            picks.append(out[1].topk(model.config.num_experts_per_tok, dim=-1).indices.sort(-1).values)
        else:  # (router_logits, weights, indices)
            picks.append(out[2].reshape(-1, out[2].shape[-1]).sort(-1).values)

    handles = [m.register_forward_hook(hook) for m in router_modules(model)]
    try:
        with torch.no_grad():
            logits = model(tokens).logits
    finally:
        for h in handles:
            h.remove()
    return logits, picks


def our_topk(model, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    picks: list[torch.Tensor] = []
    routers = [m for m in model.modules() if type(m).__name__ == "Router"]
    handles = [r.register_forward_hook(lambda m, a, out: picks.append(out[1].sort(-1).values)) for r in routers]
    try:
        with torch.no_grad():
            logits = model(tokens).logits
    finally:
        for h in handles:
            h.remove()
    return logits, picks


def import_and_build(hf_dir: Path, tmp: Path, capsys) -> tuple[object, Path]:
    """`moezoo import-hf hf_dir -o spec.yaml`, then `moezoo build spec.yaml`; returns the generated module."""
    spec_path = tmp / "spec.yaml"
    argv = sys.argv
    sys.argv = ["moezoo", "import-hf", str(hf_dir), "-o", str(spec_path)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    finally:
        sys.argv = argv
    assert exit_info.value.code == 0, capsys.readouterr().err
    target = write(render(load_spec(spec_path)), tmp / "build")
    return import_file(target / "model.py", f"parity_{tmp.name}_{target.name}"), spec_path


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_topk_and_aux_loss_match_transformers(case, tmp_path, capsys):
    model_type = case.split("+")[0]
    hf = hf_model(case)
    hf_dir = tmp_path / "checkpoint"
    hf.save_pretrained(hf_dir)
    module, _ = import_and_build(hf_dir, tmp_path, capsys)
    ours = module.Model.from_hf(hf_dir).eval()

    torch.manual_seed(1)
    tokens = torch.randint(0, VOCAB, (2, SEQ))
    hf_logits, hf_picks = hf_topk(hf, model_type, tokens)
    our_logits, our_picks = our_topk(ours, tokens)
    config = module.ModelConfig()
    is_moe = getattr(config, "is_moe_layer", lambda i: True)  # absent where every layer is MoE
    n_moe = sum(is_moe(i) for i in range(config.num_layers))
    assert n_moe >= 2 and len(hf_picks) == len(our_picks) == n_moe
    for layer, (a, b) in enumerate(zip(hf_picks, our_picks)):
        assert torch.equal(a, b), f"MoE layer {layer}: top-k experts differ"
    diff = (hf_logits - our_logits).abs().max().item()
    assert diff < 1e-4, f"max |logit diff| {diff:.2e}"
    print(f"{case}: max |logit diff| {diff:.2e}")

    if model_type in AUX_LOSS:
        with torch.no_grad():
            hf_out = hf(tokens, labels=tokens, output_router_logits=True)
            our_out = ours(tokens, labels=tokens)
        coef = hf.config.ffn_config.moe_loss_weight if model_type == "dbrx" else hf.config.router_aux_loss_coef
        expected = coef * hf_out.aux_loss
        assert torch.allclose(our_out.losses["aux"], expected, rtol=1e-5, atol=1e-7), (our_out.losses["aux"], expected)
        print(f"{case}: aux loss {our_out.losses['aux'].item():.6g} vs {expected.item():.6g}")


def test_grouped_mm_and_loop_experts_agree_after_loading(tmp_path, capsys):
    """The loaded weights drive both expert paths identically (the stacked layout is what grouped_mm expects)."""
    hf = hf_model("qwen2_moe")
    hf.save_pretrained(tmp_path / "checkpoint")
    module, _ = import_and_build(tmp_path / "checkpoint", tmp_path, capsys)
    tokens = torch.randint(0, VOCAB, (2, SEQ))
    a = module.Model.from_hf(tmp_path / "checkpoint").eval()
    math = {"attn_impl": "math"} if hasattr(module.ModelConfig(), "attn_impl") else {}  # sinks/softcap: math only
    b = module.Model.from_hf(tmp_path / "checkpoint", expert_impl="loop", **math).eval()
    with torch.no_grad():
        assert (a(tokens).logits - b(tokens).logits).abs().max().item() < 1e-5


# --------------------------------------------------------------------------- the loader itself


@pytest.fixture(scope="module")
def mixtral_checkpoint(tmp_path_factory):
    """A tiny Mixtral saved by transformers, the generated module for it, and the transformers model."""
    tmp = tmp_path_factory.mktemp("mixtral")
    hf = hf_model("mixtral")
    hf.save_pretrained(tmp / "checkpoint")
    from moezoo.hf import import_hf

    _, text = import_hf(tmp / "checkpoint")
    (tmp / "spec.yaml").write_text(text)
    target = write(render(load_spec(tmp / "spec.yaml")), tmp / "build")
    return tmp / "checkpoint", import_file(target / "model.py", "loader_mixtral"), hf


def _logits(model, seed: int = 3) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(torch.randint(0, VOCAB, (2, SEQ))).logits


def test_sharded_checkpoints_load_with_and_without_the_index(mixtral_checkpoint, tmp_path):
    _, module, hf = mixtral_checkpoint
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    files = sorted(p.name for p in (tmp_path / "sharded").glob("*.safetensors"))
    assert len(files) > 2 and (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    expected = _logits(hf)
    assert (_logits(module.Model.from_hf(tmp_path / "sharded").eval()) - expected).abs().max() < 1e-4
    (tmp_path / "sharded" / "model.safetensors.index.json").unlink()
    assert (_logits(module.Model.from_hf(tmp_path / "sharded").eval()) - expected).abs().max() < 1e-4


def test_hf_py_reads_with_safetensors_and_names_the_package_when_it_is_missing(mixtral_checkpoint, monkeypatch):
    """hf.py (beside model.py) reads through the safetensors package: the same tensors as safetensors' own
    load_file; without the package, from_hf raises one ImportError that says how to install it, and importing
    model.py itself needs only torch."""
    from safetensors.torch import load_file

    path, module, hf = mixtral_checkpoint
    ours = module.Model.hf().read_safetensors(path / "model.safetensors")
    reference = load_file(str(path / "model.safetensors"))
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[k], reference[k]) and ours[k].dtype == reference[k].dtype for k in reference)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # `from safetensors import ...` now raises ImportError
    with pytest.raises(ImportError, match="pip install safetensors"):
        module.Model.from_hf(path)
    again = import_file(Path(module.__file__), "loader_mixtral_without_safetensors")  # model.py: torch only
    assert again.Model is not module.Model


def test_fused_in_memory_layout_and_assign_without_copies(mixtral_checkpoint):
    """transformers' own state_dict (fused gate_up_proj experts) loads too, and copy-layout tensors are assigned,
    not copied: a model built on meta ends up owning the very tensors it was given."""
    _, module, hf = mixtral_checkpoint
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in sd)
    with torch.device("meta"):
        model = module.Model(module.ModelConfig())
    model.load_hf_state_dict(sd)
    assert model.embed.weight.data_ptr() == sd["model.embed_tokens.weight"].data_ptr()
    assert model.layers[1].attn.wq.weight.data_ptr() == sd["model.layers.1.self_attn.q_proj.weight"].data_ptr()
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    assert (_logits(model.eval()) - _logits(hf)).abs().max() < 1e-4


def test_mismatched_checkpoint_lists_missing_and_unexpected_keys(mixtral_checkpoint):
    path, module, _ = mixtral_checkpoint
    sd = module.Model.hf().read_safetensors(path / "model.safetensors")
    del sd["model.layers.2.self_attn.k_proj.weight"]
    del sd["model.layers.0.block_sparse_moe.experts.3.w2.weight"]
    sd["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # old checkpoints: ignored
    sd["model.layers.1.mlp.shared_expert.gate_proj.weight"] = torch.ones(2, 2)
    sd["model.layers.9.input_layernorm.weight"] = torch.ones(64)  # a layer this model does not have
    sd["model.norm.weight"] = torch.ones(65)
    with torch.device("meta"):
        model = module.Model(module.ModelConfig())
    with pytest.raises(ValueError) as err:
        model.load_hf_state_dict(sd)
    text = str(err.value)
    assert "missing" in text and "layers.2.attn.wk.weight" in text
    assert "layers.0.moe.experts.w_down (experts [3] missing)" in text
    assert "unexpected" in text and "model.layers.1.mlp.shared_expert.gate_proj.weight" in text
    assert "model.layers.9.input_layernorm.weight" in text and "inv_freq" not in text
    assert "shape mismatches" in text and "model.norm.weight -> norm.weight: (65,), expected (64,)" in text
    assert all(p.is_meta for p in model.parameters())  # nothing was assigned


def test_deepseek_v3_mtp_layer_maps_onto_the_mtp_module(tmp_path):
    """The release stores MTP module k as model.layers.<num_layers + k> (its block keys plus enorm, hnorm,
    eh_proj, shared_head); transformers builds no MTP, so the tensors are made here from a model one layer deeper."""
    from moezoo.hf import import_hf

    deeper = hf_model("deepseek_v3")  # 3 layers; layer 2 plays the MTP block
    sd = {k: v for k, v in deeper.state_dict().items()}
    config = {**CASES["deepseek_v3"], "num_hidden_layers": 2, "num_nextn_predict_layers": 1}
    transformers.AutoConfig.for_model("deepseek_v3", **config).save_pretrained(tmp_path / "checkpoint")
    _, text = import_hf(tmp_path / "checkpoint")
    (tmp_path / "spec.yaml").write_text(text)
    module = import_file(write(render(load_spec(tmp_path / "spec.yaml")), tmp_path / "b") / "model.py", "mtp_v3")
    D = CASES["deepseek_v3"]["hidden_size"]
    extra = {"enorm.weight": torch.randn(D), "hnorm.weight": torch.randn(D), "eh_proj.weight": torch.randn(D, 2 * D),
             "shared_head.norm.weight": torch.randn(D), "embed_tokens.weight": sd["model.embed_tokens.weight"],
             "shared_head.head.weight": sd["lm_head.weight"]}
    sd.update({f"model.layers.2.{k}": v for k, v in extra.items()})
    with torch.device("meta"):
        model = module.Model(module.ModelConfig())
    model.load_hf_state_dict(sd)
    mtp = model.mtp[0]
    assert torch.equal(mtp.eh_proj.weight, extra["eh_proj.weight"])
    assert torch.equal(mtp.norm.weight, extra["shared_head.norm.weight"])
    assert torch.equal(mtp.block.moe.router.e_score_correction_bias, sd["model.layers.2.mlp.gate.e_score_correction_bias"])
    assert torch.equal(mtp.block.moe.experts.w_up[5], sd["model.layers.2.mlp.experts.gate_up_proj"][5, 16:])
    # A transformers checkpoint has no MTP tensors: the message says which are missing.
    del sd["model.layers.2.eh_proj.weight"]
    with torch.device("meta"):
        model = module.Model(module.ModelConfig())
    with pytest.raises(ValueError, match=r"mtp\.0\.eh_proj\.weight"):
        model.load_hf_state_dict(sd)


def test_deepseek_v3_saved_by_transformers_without_mtp_tensors_loads_without_mtp(tmp_path, capsys, monkeypatch):
    """Issue 11 item 7. transformers keeps num_nextn_predict_layers: 1 in config.json but builds and saves no MTP
    module. from_hf loads the main model and drops MTP (mtp_depth=0) with one warning line that says what to do;
    the logits equal transformers' and training losses work; save_hf then writes num_nextn_predict_layers 0.
    Asking for MTP explicitly (mtp_depth=1) is an error that names the missing tensors and the fix."""
    import warnings

    # every field the test relies on set explicitly (transformers 5.24 changed defaults)
    config = {**CASES["deepseek_v3"], "num_hidden_layers": 3, "num_nextn_predict_layers": 1, "rope_interleave": True,
              "tie_word_embeddings": False}
    monkeypatch.setitem(CASES, "deepseek_v3+saved_with_mtp_config", config)
    hf = hf_model("deepseek_v3+saved_with_mtp_config")
    hf.save_pretrained(tmp_path / "checkpoint")
    assert json.loads((tmp_path / "checkpoint" / "config.json").read_text())["num_nextn_predict_layers"] == 1
    from safetensors import safe_open

    with safe_open(str(tmp_path / "checkpoint" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("model.layers.3.")]  # no MTP tensors were written
    module, _ = import_and_build(tmp_path / "checkpoint", tmp_path, capsys)
    assert module.ModelConfig().mtp_depth == 1  # the spec keeps the release's MTP module

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = module.Model.from_hf(tmp_path / "checkpoint").eval()
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert "\n" not in message and "no MTP tensors" in message and "mtp_depth=0" in message
    assert str(tmp_path / "checkpoint") in message and caught[0].filename == __file__  # points at the caller
    assert ours.config.mtp_depth == 0 and len(ours.mtp) == 0
    expected = _logits(hf)
    assert (_logits(ours) - expected).abs().max() < 1e-4
    tokens = torch.randint(0, VOCAB, (2, SEQ))
    out = ours(tokens, labels=tokens)
    assert torch.isfinite(out.loss) and float(out.losses.get("mtp", 0.0)) == 0.0  # no MTP module, no MTP loss

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said explicitly: no warning
        quiet = module.Model.from_hf(tmp_path / "checkpoint", mtp_depth=0)
    assert (_logits(quiet.eval()) - expected).abs().max() < 1e-4
    with pytest.raises(ValueError, match=r"(?s)mtp\.0\.eh_proj\.weight.*load it with mtp_depth=0"):
        module.Model.from_hf(tmp_path / "checkpoint", mtp_depth=1)

    ours.save_hf(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["num_nextn_predict_layers"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the saved config says no MTP, and the spec imported from it has none
        again = module.Model.from_hf(tmp_path / "saved", mtp_depth=0)
    assert torch.equal(_logits(again.eval()), _logits(ours))


# --------------------------------------------------------------------------- bad checkpoints (issue 18)


def _bad_checkpoint(mixtral_checkpoint, tmp_path, change) -> tuple[Path, dict]:
    """The tiny Mixtral checkpoint with `change(state_dict)` applied, written to tmp_path/bad/model.safetensors."""
    from safetensors.torch import save_file

    path, module, _ = mixtral_checkpoint
    sd = module.Model.hf().read_safetensors(path / "model.safetensors")
    change(sd)
    (tmp_path / "bad").mkdir()
    save_file(sd, str(tmp_path / "bad" / "model.safetensors"))
    return tmp_path / "bad" / "model.safetensors", sd


def test_expert_index_beyond_the_model_is_a_named_error(mixtral_checkpoint, tmp_path):
    E1 = "model.layers.0.block_sparse_moe.experts.1.w1.weight"
    file, _ = _bad_checkpoint(mixtral_checkpoint, tmp_path, lambda sd: sd.update(
        {E1.replace("experts.1.", "experts.9."): sd[E1].clone()}))
    with pytest.raises(ValueError) as err:
        mixtral_checkpoint[1].Model.from_hf(file.parent)
    assert f"{file}: model.layers.0.block_sparse_moe.experts.9.w1.weight (expert 9: this model has 6 experts)" in str(
        err.value)


def test_integer_tensor_where_a_weight_belongs_is_a_named_error(mixtral_checkpoint, tmp_path):
    file, _ = _bad_checkpoint(mixtral_checkpoint, tmp_path, lambda sd: sd.update(
        {"model.norm.weight": torch.arange(64)}))
    with pytest.raises(ValueError) as err:
        mixtral_checkpoint[1].Model.from_hf(file.parent)
    assert f"{file}: model.norm.weight: torch.int64 where torch.float32 belongs" in str(err.value)


def test_the_same_tensor_in_two_shards_is_an_error_not_last_wins(mixtral_checkpoint, tmp_path):
    """With or without the index: the second file that holds a name is named with the first, before any read."""
    from safetensors.torch import save_file

    path, module, _ = mixtral_checkpoint
    sd = module.Model.hf().read_safetensors(path / "model.safetensors")
    names = sorted(sd)
    (tmp_path / "dup").mkdir()
    first, second = tmp_path / "dup" / "model-00001-of-00002.safetensors", tmp_path / "dup" / "model-00002-of-00002.safetensors"
    save_file({k: sd[k] for k in names[: len(names) // 2]}, str(first))
    dup = names[0]  # in the first shard, and (changed) in the second too
    save_file({k: sd[k] + 1 if k == dup else sd[k] for k in names[len(names) // 2 :] + [dup]}, str(second))
    message = f"{second}: tensor {dup} is also in {first}"
    with pytest.raises(ValueError, match=re.escape(message)):
        module.Model.from_hf(tmp_path / "dup")
    weight_map = {k: first.name for k in names[: len(names) // 2]} | {k: second.name for k in names[len(names) // 2 :]}
    (tmp_path / "dup" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match=re.escape(message)):
        module.Model.from_hf(tmp_path / "dup")


def test_a_float16_tensor_in_a_float32_checkpoint_is_refused_unless_a_dtype_is_given(mixtral_checkpoint, tmp_path):
    """Decision: no silent mixed dtypes (they fail at the first matmul). Without dtype= the odd tensor is named;
    with dtype=torch.float32 every tensor is converted and the model equals one whose weight was rounded alike."""
    Q = "model.layers.1.self_attn.q_proj.weight"
    file, sd = _bad_checkpoint(mixtral_checkpoint, tmp_path, lambda sd: sd.update({Q: sd[Q].half()}))
    path, module, _ = mixtral_checkpoint
    with pytest.raises(ValueError) as err:
        module.Model.from_hf(file.parent)
    assert (f"{file}: {Q}: torch.float16, the rest torch.float32 (pass dtype= to convert every tensor to one dtype)"
            in str(err.value))
    converted = module.Model.from_hf(file.parent, dtype=torch.float32).eval()
    assert {p.dtype for p in converted.parameters()} == {torch.float32}
    reference = module.Model.from_hf(path).eval()
    with torch.no_grad():
        reference.layers[1].attn.wq.weight.copy_(sd[Q].float())
    assert torch.equal(_logits(converted), _logits(reference))


def test_missing_and_corrupt_files_are_named_errors(mixtral_checkpoint, tmp_path):
    path, module, _ = mixtral_checkpoint
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'nowhere'}: no such checkpoint file or directory")):
        module.Model.from_hf(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'empty'}: no .safetensors files")):
        module.Model.from_hf(tmp_path / "empty")
    index = tmp_path / "indexed" / "model.safetensors.index.json"
    index.parent.mkdir()
    index.write_text(json.dumps({"weight_map": {"model.norm.weight": "model-00001-of-00001.safetensors"}}))
    with pytest.raises(ValueError, match=re.escape(f"{index}: names model-00001-of-00001.safetensors, which is not")):
        module.Model.from_hf(index.parent)
    index.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(f"{index}: not a safetensors index")):
        module.Model.from_hf(index.parent)
    data = (path / "model.safetensors").read_bytes()
    truncated = tmp_path / "truncated" / "model.safetensors"
    truncated.parent.mkdir()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{truncated}: not a readable safetensors file")):
        module.Model.from_hf(truncated.parent)
    truncated.write_bytes(b"\x07")
    with pytest.raises(ValueError, match=re.escape(f"{truncated}: not a readable safetensors file")):
        module.Model.from_hf(truncated)


def test_a_failed_load_leaves_a_live_model_unchanged(mixtral_checkpoint):
    path, module, _ = mixtral_checkpoint
    model = module.Model(module.ModelConfig())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sd = module.Model.hf().read_safetensors(path / "model.safetensors")
    sd["model.norm.weight"] = torch.arange(64)  # the last problem found; every other tensor is fine
    with pytest.raises(ValueError, match="torch.int64 where torch.float32 belongs"):
        model.load_hf_state_dict(sd)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- Switch Transformers (encoder-decoder)

SWITCH = dict(  # 4 + 4 layers with 2 sparse per stack (layers 1 and 3: i % (4 // 2) == 1), every option on
    vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=48, num_layers=4, num_decoder_layers=4, num_heads=4, num_experts=6,
    num_sparse_encoder_layers=2, num_sparse_decoder_layers=2, expert_capacity=64, relative_attention_num_buckets=8,
    relative_attention_max_distance=20, router_bias=True, router_jitter_noise=0.01, router_z_loss_coef=0.003,
    router_aux_loss_coef=0.02, dense_act_fn="relu", decoder_start_token_id=0, pad_token_id=0,
)
SWITCH_CASES = {"tied": {}, "untied+gelu": {"tie_word_embeddings": False, "dense_act_fn": "gelu"}}


def switch_model(**changes):
    config = transformers.AutoConfig.for_model("switch_transformers", **{**SWITCH, **changes})
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.AutoModelForSeq2SeqLM.from_config(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.3)
        if not model.config.tie_word_embeddings:  # 5.23 unties the stacks' input embeddings too: share them again
            model.encoder.embed_tokens.weight.copy_(model.shared.weight)
            model.decoder.embed_tokens.weight.copy_(model.shared.weight)
    return model.eval()


def switch_run(model, ours: bool, src: torch.Tensor, tgt: torch.Tensor):
    """(output with losses, per MoE layer the expert each token chose), encoder layers first."""
    picks: list[torch.Tensor] = []
    if ours:
        routers = [m for m in model.modules() if type(m).__name__ == "Router"]
        hook = lambda m, a, out: picks.append(out[1].reshape(-1))
    else:
        routers = [m for m in model.modules() if type(m).__name__ == "SwitchTransformersTop1Router"]
        hook = lambda m, a, out: picks.append(out[2].argmax(-1).reshape(-1))
    handles = [r.register_forward_hook(hook) for r in routers]
    try:
        with torch.no_grad():
            if ours:
                out = model(src, decoder_input_ids=tgt, labels=tgt)
            else:
                out = model(input_ids=src, decoder_input_ids=tgt, labels=tgt, output_router_logits=True)
    finally:
        for h in handles:
            h.remove()
    return out, picks


@pytest.mark.parametrize("case", sorted(SWITCH_CASES))
def test_switch_logits_experts_and_router_losses_match_transformers(case, tmp_path, capsys):
    """Dropless (expert_capacity 64 >= the 16 tokens of a sequence; our eval capacity factor raised to E): logits
    within 1e-4, the same expert for every token in all 4 MoE layers, and both router losses equal to
    transformers' coefficient x (encoder + decoder) loss (each pooled over its stack's layers, f and P per
    sequence: `layer_reduction: hf_pooled`)."""
    hf = switch_model(**SWITCH_CASES[case])
    hf.save_pretrained(tmp_path / "checkpoint")
    module, _ = import_and_build(tmp_path / "checkpoint", tmp_path, capsys)
    config = module.ModelConfig()
    ours = module.Model.from_hf(tmp_path / "checkpoint", capacity_factor_eval=float(config.num_experts)).eval()
    torch.manual_seed(1)
    src, tgt = torch.randint(0, VOCAB, (3, SEQ)), torch.randint(0, VOCAB, (3, SEQ - 5))
    hf_out, hf_picks = switch_run(hf, False, src, tgt)
    our_out, our_picks = switch_run(ours, True, src, tgt)
    assert len(hf_picks) == len(our_picks) == 4
    for layer, (a, b) in enumerate(zip(hf_picks, our_picks)):
        assert torch.equal(a, b), f"MoE layer {layer}: experts differ"
    diff = (hf_out.logits - our_out.logits).abs().max().item()
    assert diff < 1e-4, f"max |logit diff| {diff:.2e}"
    assert float(our_out.dropped_fraction) == 0.0
    c = hf.config
    z = c.router_z_loss_coef * (hf_out.encoder_z_loss + hf_out.decoder_z_loss)
    aux = c.router_aux_loss_coef * (hf_out.encoder_aux_loss + hf_out.decoder_aux_loss)
    assert torch.allclose(our_out.losses["z"], z, rtol=1e-5), (our_out.losses["z"], z)
    assert torch.allclose(our_out.losses["aux"], aux, rtol=1e-5), (our_out.losses["aux"], aux)
    assert torch.allclose(our_out.losses["lm"], hf_out.loss - z - aux, rtol=1e-5)
    print(f"switch {case}: max |logit diff| {diff:.2e}; z {our_out.losses['z'].item():.6g} vs {z.item():.6g}; "
          f"aux {our_out.losses['aux'].item():.6g} vs {aux.item():.6g}")


def test_switch_capacity_drops_the_same_tokens_as_transformers(tmp_path, capsys):
    """One sequence of 16 tokens and 6 experts: transformers keeps the first 3 tokens (in sequence order) sent to
    each expert (expert_capacity 3); ours has capacity ceil(factor x 16 / 6) = 3 at factor 1.125 and the same
    queue order. The overflow tokens skip the expert in both (zero expert output), so the logits still agree."""
    hf = switch_model(expert_capacity=3)
    hf.save_pretrained(tmp_path / "checkpoint")
    module, _ = import_and_build(tmp_path / "checkpoint", tmp_path, capsys)
    ours = module.Model.from_hf(tmp_path / "checkpoint", capacity_factor_eval=1.125).eval()
    torch.manual_seed(2)
    src, tgt = torch.randint(0, VOCAB, (1, SEQ)), torch.randint(0, VOCAB, (1, SEQ))
    hf_out, _ = switch_run(hf, False, src, tgt)
    our_out, _ = switch_run(ours, True, src, tgt)
    assert float(our_out.dropped_fraction) > 0.1  # the router at init is far from balanced
    diff = (hf_out.logits - our_out.logits).abs().max().item()
    assert diff < 1e-4, f"max |logit diff| {diff:.2e} with {float(our_out.dropped_fraction):.2f} dropped"


def test_switch_separate_stack_embeddings_are_refused(tmp_path, capsys):
    """transformers 5.23 with tie_word_embeddings false keeps encoder/decoder embed_tokens apart from shared;
    a moezoo spec has one input embedding, so a checkpoint where they differ must not load silently."""
    hf = switch_model(tie_word_embeddings=False)
    with torch.no_grad():
        hf.decoder.embed_tokens.weight.add_(1.0)
    hf.save_pretrained(tmp_path / "checkpoint")
    module, _ = import_and_build(tmp_path / "checkpoint", tmp_path, capsys)
    with pytest.raises(ValueError, match=r"decoder\.embed_tokens\.weight differs from the tensor loaded as embed\.weight"):
        module.Model.from_hf(tmp_path / "checkpoint")


@pytest.mark.parametrize("case", ["mixtral", "minimax", "llama4_text"])
def test_greedy_generation_matches_transformers(case, tmp_path, capsys):
    """Model.generate (no cache: every step re-reads the sequence) against transformers' generate (KV cache;
    MiniMax's lightning layers then take their recurrent one-token path, Llama 4's chunked layers their cached
    masks): the same 12 greedy tokens after a 10-token prompt crossing chunk / block borders."""
    hf = hf_model(case)
    hf.save_pretrained(tmp_path / "checkpoint")
    module, _ = import_and_build(tmp_path / "checkpoint", tmp_path, capsys)
    ours = module.Model.from_hf(tmp_path / "checkpoint").eval()
    torch.manual_seed(4)
    prompt = torch.randint(0, VOCAB, (2, 10))
    with torch.no_grad():
        theirs = hf.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, max_new_tokens=12), theirs[:, 10:])


def test_switch_greedy_generation_matches_transformers(tmp_path, capsys):
    """Encoder-decoder Model.generate (encode once, no decoder cache) against transformers' cached generate:
    the same 10 greedy tokens; top_k=1 sampling gives them too."""
    hf = switch_model()
    hf.save_pretrained(tmp_path / "checkpoint")
    module, _ = import_and_build(tmp_path / "checkpoint", tmp_path, capsys)
    config = module.ModelConfig()
    ours = module.Model.from_hf(tmp_path / "checkpoint", capacity_factor_eval=float(config.num_experts)).eval()
    torch.manual_seed(5)
    src = torch.randint(2, VOCAB, (2, SEQ))
    with torch.no_grad():
        theirs = hf.generate(src, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    greedy = ours.generate(src, max_new_tokens=10)
    assert torch.equal(greedy, theirs[:, 1:])  # transformers' output starts with decoder_start_token_id
    assert torch.equal(ours.generate(src, 10, temperature=0.5, top_k=1), greedy)
