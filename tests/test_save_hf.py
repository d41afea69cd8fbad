"""Weights both ways: Model.save_hf and `python hf.py export` write Hugging Face checkpoints that transformers loads.

For every model_type with an import table: the tiny transformers config of tests/test_hf_parity.py is imported
(`moezoo import-hf`) and built; our randomly initialised model (norms and biases perturbed so that they matter)
is saved with save_hf; transformers' from_pretrained must load it with no missing and no unexpected tensors and
give logits within 1e-5 of ours (float32, eval) and the same greedy tokens. The config.json written is byte for
byte what `moezoo export-hf` writes for the spec, and from_hf reads the checkpoint back to our exact tensors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from test_hf_parity import CASES, SEQ, SWITCH, VOCAB, import_and_build

from moezoo.hf import config_json, export_spec
from moezoo.spec import load_spec

# one case per model_type with an import table (tests/test_hf_parity.py's tiny configs), plus DeepSeek-V3 with MTP
SAVE_CASES = ["mixtral", "dbrx", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe", "gpt_oss",
              "llama4_text", "minimax", "deepseek_v3+mtp", "mixtral+tied"]
CONFIGS = {**CASES, "deepseek_v3+mtp": {**CASES["deepseek_v3"], "num_nextn_predict_layers": 1}}


def perturbed(module, **overrides):
    """Our model, randomly initialised, with norms, biases and routing biases moved off their constant init."""
    torch.manual_seed(0)
    model = module.Model(module.ModelConfig(**overrides))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm weights (init 1) and biases (init 0)
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.1)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.normal_(0.0, 0.05)
    return model.eval()


def build_from_config(case: str, tmp: Path, capsys, config: dict | None = None):
    """A transformers config.json only (no weights) -> import-hf -> build; returns (module, spec path)."""
    model_type = case.split("+")[0]
    hf_config = transformers.AutoConfig.for_model(model_type, **(config or CONFIGS[case]))
    hf_config.save_pretrained(tmp / "hf_config")
    return import_and_build(tmp / "hf_config", tmp, capsys)


def exported_config(spec_path: Path) -> str:
    """What `moezoo export-hf SPEC` prints for the spec."""
    return config_json(export_spec(load_spec(spec_path).spec).config)


@pytest.mark.parametrize("case", SAVE_CASES)
def test_save_hf_loads_in_transformers_with_equal_logits_and_tokens(case, tmp_path, capsys):
    module, spec_path = build_from_config(case, tmp_path, capsys)
    ours = perturbed(module)
    ours.save_hf(tmp_path / "saved")
    assert (tmp_path / "saved" / "config.json").read_text() == exported_config(spec_path)

    theirs, info = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "saved", attn_implementation="eager", output_loading_info=True)
    theirs = theirs.float().eval()
    # MiniMax's lightning decay rates: buffers transformers computes from the config (_init_weights) when absent
    computed = ("slope_rate", "query_decay", "key_decay", "diagonal_decay") if case == "minimax" else ()
    assert not [k for k in info["missing_keys"] if not k.endswith(computed)], info["missing_keys"]
    num_layers = ours.config.num_layers
    mtp_layer = f"model.layers.{num_layers}."  # transformers builds no MTP module: only those are left over
    assert all(k.startswith(mtp_layer) for k in info["unexpected_keys"]), info["unexpected_keys"]
    assert bool(info["unexpected_keys"]) == (case == "deepseek_v3+mtp")
    assert not info["mismatched_keys"]

    torch.manual_seed(1)
    tokens = torch.randint(0, VOCAB, (2, SEQ))
    with torch.no_grad():
        diff = (ours(tokens).logits - theirs(tokens).logits).abs().max().item()
    assert diff < 1e-5, f"{case}: max |logit diff| {diff:.2e}"
    prompt = tokens[:, :6]
    with torch.no_grad():
        hf_tokens = theirs.generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, max_new_tokens=8), hf_tokens[:, 6:])

    back = module.Model.from_hf(tmp_path / "saved")  # and our own loader reads it back exactly
    expected = ours.state_dict()
    assert back.state_dict().keys() == expected.keys()
    assert all(torch.equal(t, expected[k]) for k, t in back.state_dict().items())
    print(f"{case}: max |logit diff| {diff:.2e}")


@pytest.mark.parametrize("tied", [True, False])
def test_switch_save_hf_loads_in_transformers(tied, tmp_path, capsys):
    """Encoder-decoder: SwitchTransformersForConditionalGeneration.from_pretrained; dropless on both sides (the
    exported expert_capacity covers the 16 tokens; ours evaluated with capacity factor E)."""
    module, spec_path = build_from_config("switch_transformers", tmp_path, capsys,
                                          {**SWITCH, "tie_word_embeddings": tied})
    saved = perturbed(module)
    saved.save_hf(tmp_path / "saved")
    assert (tmp_path / "saved" / "config.json").read_text() == exported_config(spec_path)
    theirs, info = transformers.AutoModelForSeq2SeqLM.from_pretrained(
        tmp_path / "saved", attn_implementation="eager", output_loading_info=True)
    theirs = theirs.float().eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ours = module.Model(module.ModelConfig(capacity_factor_eval=float(saved.config.num_experts))).eval()
    ours.load_state_dict(saved.state_dict())
    torch.manual_seed(2)
    src, tgt = torch.randint(2, VOCAB, (2, SEQ)), torch.randint(0, VOCAB, (2, SEQ - 4))
    with torch.no_grad():
        ours_out, theirs_out = ours(src, decoder_input_ids=tgt), theirs(input_ids=src, decoder_input_ids=tgt)
    diff = (ours_out.logits - theirs_out.logits).abs().max().item()
    assert diff < 1e-5, f"max |logit diff| {diff:.2e}"
    with torch.no_grad():
        hf_tokens = theirs.generate(src, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                                    decoder_start_token_id=ours.config.decoder_start_token_id)
    assert torch.equal(ours.generate(src, max_new_tokens=8), hf_tokens[:, 1:])


def test_save_hf_refuses_a_config_that_the_spec_does_not_describe(tmp_path, capsys):
    """config.json is the built spec's: a ModelConfig changed in an architecture field is refused (nothing written);
    implementation choices (attn_impl, expert_impl, init_std) are not part of the checkpoint and are allowed."""
    module, _ = build_from_config("mixtral", tmp_path, capsys)
    with torch.device("meta"):
        other = module.Model(module.ModelConfig(num_layers=2))
    with pytest.raises(ValueError, match=r"num_layers = 2 \(built: 3\).*moezoo build"):
        other.save_hf(tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    perturbed(module, expert_impl="loop", attn_impl="math").save_hf(tmp_path / "fine")
    assert (tmp_path / "fine" / "model.safetensors").is_file()


def test_save_hf_shards_like_transformers(tmp_path, capsys):
    """Past max_shard_bytes the weights go to model-0000k-of-0000n.safetensors with an index; from_hf and
    transformers both read the shards."""
    module, _ = build_from_config("qwen3_moe", tmp_path, capsys)
    ours = perturbed(module)
    hf = ours.hf()
    hf.save(ours, tmp_path / "sharded", max_shard_bytes=60_000)
    files = sorted(p.name for p in (tmp_path / "sharded").glob("*.safetensors"))
    assert len(files) > 2 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(files)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "sharded").float().eval()
    tokens = torch.randint(0, VOCAB, (1, SEQ))
    with torch.no_grad():
        assert (ours(tokens).logits - theirs(tokens).logits).abs().max().item() < 1e-5
        assert torch.equal(module.Model.from_hf(tmp_path / "sharded").eval()(tokens).logits, ours(tokens).logits)


def train_checkpoint(model, step_dir: Path) -> None:
    """What train.py writes: model.safetensors of Model.state_dict(), and state.json with the ModelConfig."""
    step_dir.mkdir(parents=True)
    model.hf().write_safetensors(step_dir / "model.safetensors", model.state_dict())
    run = {"step": 10, "world": 1, "config": asdict(model.config), "args": {}}
    (step_dir / "state.json").write_text(json.dumps(run, indent=1) + "\n")


def test_hf_py_export_turns_a_train_checkpoint_into_a_transformers_checkpoint(tmp_path, capsys):
    """`python hf.py export RUN_DIR OUT` (the newest checkpoint named by RUN_DIR/ckpt/latest, as train.py writes
    it) -> a directory transformers loads with logits within 1e-5; a checkpoint of another model is one error line."""
    module, spec_path = build_from_config("olmoe", tmp_path, capsys)
    hf_py = Path(module.__file__).with_name("hf.py")
    ours = perturbed(module)
    run = tmp_path / "run"
    train_checkpoint(ours, run / "ckpt" / "step_000010")
    (run / "ckpt" / "latest").write_text("step_000010\n")
    done = subprocess.run([sys.executable, str(hf_py), "export", str(run), str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "config.json").read_text() == exported_config(spec_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").float().eval()
    tokens = torch.randint(0, VOCAB, (2, SEQ))
    with torch.no_grad():
        assert (ours(tokens).logits - theirs(tokens).logits).abs().max().item() < 1e-5

    weights = ours.hf().read_safetensors(run / "ckpt" / "step_000010" / "model.safetensors")
    weights["norm.weight"] = torch.ones(3)
    ours.hf().write_safetensors(run / "ckpt" / "step_000010" / "model.safetensors", weights)
    bad = subprocess.run([sys.executable, str(hf_py), "export", str(run / "ckpt" / "step_000010"),
                          str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: ") and "model.safetensors: not a checkpoint of this model" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_write_safetensors_is_atomic_and_read_back_exactly(tmp_path, capsys):
    """write_safetensors replaces the file whole (no temporary left), stores metadata, copies views and shared
    storage; read_safetensors gives the same tensors (the safetensors library reads the file too)."""
    from safetensors import safe_open

    module, _ = build_from_config("mixtral", tmp_path, capsys)
    hf = module.Model.hf()
    base = torch.arange(24, dtype=torch.float32).view(4, 6)
    tensors = {"a": base, "row": base[1], "col": base[:, 2], "same": base, "ints": torch.arange(5),
               "bf16": base.to(torch.bfloat16)}
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"old")
    hf.write_safetensors(target, tensors, {"format": "pt", "step": "3"})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    back = hf.read_safetensors(target)
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in tensors.items())
    with safe_open(str(target), "pt") as f:
        assert f.metadata() == {"format": "pt", "step": "3"}
