"""Checkpoint key maps: Hugging Face tensor names and layouts <-> a generated model's parameters.

`checkpoint_map(spec)` is computed here and printed by templates/hf.py.j2 as one literal dict in the build's
hf.py (STYLE.md point 9), with only the layout conversions that model needs, the config.json that
`moezoo export-hf` writes for the spec (for `Model.save_hf`), and which entries `save_hf` writes.

Pattern syntax: `{i}` is a layer index, `{e}` an expert index. A target with several names (separated by
spaces) receives the pieces of one fused tensor. Layer indices at or past `num_layers` are DeepSeek-V3's
MTP modules (`model.layers.61` in the release): `layers.{i}.X` then means `mtp.{i - num_layers}.block.X`.

Ops (the layout conversions; `save_hf` applies the inverse):
  copy          same layout
  expert        one expert's matrix, stacked into the (E, out, in) parameter at index {e}
  chunk         (E, 2F, D) gate and up concatenated (transformers' fused gate_up_proj) -> gate, up
  interleave_t  (E, D, 2F) gate/up interleaved in the last dim, transposed (gpt-oss) -> gate, up
  interleave    (E, 2F) interleaved biases (gpt-oss) -> gate, up
  t             (E, in, out) -> (E, out, in)
  qkv           DBRX's fused Wqkv rows -> wq, wk, wv
  experts_2d    DBRX's (E*F, D) stacked experts -> (E, F, D)
  experts_2d_t  DBRX's w2, (E*F, D) -> (E, D, F)
  rope_q        MLA query rows: DeepSeek's interleaved rope pairs -> rotate-half order (each head)
  rope_kv       MLA kv_a rows: the same for the shared rope key
  chunk_t       (E, D, 2F) gate and up concatenated in the last dim, used as x @ w (Llama 4) -> gate, up (E, F, D)
  rope_heads    q/k rows of each head with rope dims as interleaved pairs (Llama 4's complex rope) -> rotate-half
                order; applied on every layer (a permutation shared by q and k leaves q.k unchanged on NoPE layers)
  same_as       a copy of another loaded tensor (Switch's encoder/decoder embed_tokens = shared.weight): checked
                equal, not loaded twice

Entries in `load_only` are accepted by `from_hf` but never written by `save_hf`: transformers' fused in-memory
expert layout (what `safetensors.torch.save_file(hf_model.state_dict())` holds; `save_pretrained` writes the
released per-expert names) and the name transformers gives Mixtral's router in memory. `copies` are tensors a
release stores twice (DeepSeek-V3's MTP layer repeats the embedding and the head): written by `save_hf`,
ignored on load.
"""

from __future__ import annotations

import json
import math
from typing import Any

from moezoo.spec.schema import GQASpec, MLASpec, ModelSpec

MODEL_TYPES = ("mixtral", "dbrx", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe", "gpt_oss",
               "switch_transformers", "llama4_text", "minimax")


def _switch_keys(spec: ModelSpec) -> list[tuple[str, str, str]]:
    """transformers' SwitchTransformersForConditionalGeneration: T5 names, `layer.k` sub-layers per block
    (encoder: 0 self-attention, 1 FFN; decoder: 0 self-attention, 1 cross-attention, 2 FFN)."""
    keys = [("shared.weight", "embed.weight", "copy"),
            ("encoder.embed_tokens.weight", "embed.weight", "same_as"),
            ("decoder.embed_tokens.weight", "embed.weight", "same_as")]
    dense = any(not spec.is_moe_layer(i) for n in (spec.num_encoder_layers, spec.num_layers) for i in range(n))
    for stack in ("encoder", "decoder"):
        B, L = f"{stack}.block.{{i}}.", f"{stack}.layers.{{i}}."
        keys += [(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", f"{stack}.rel_bias.weight",
                  "copy"),
                 (f"{stack}.final_layer_norm.weight", f"{stack}.norm.weight", "copy"),
                 (B + "layer.0.layer_norm.weight", L + "attn_norm.weight", "copy")]
        keys += [(B + f"layer.0.SelfAttention.{w}.weight", L + f"attn.w{w}.weight", "copy") for w in "qkvo"]
        ff = 1
        if stack == "decoder":
            ff = 2
            keys.append((B + "layer.1.layer_norm.weight", L + "cross_norm.weight", "copy"))
            keys += [(B + f"layer.1.EncDecAttention.{w}.weight", L + f"cross_attn.w{w}.weight", "copy") for w in "qkvo"]
        F = B + f"layer.{ff}."
        keys.append((F + "layer_norm.weight", L + "ffn_norm.weight", "copy"))
        if dense:
            keys += [(F + "mlp.wi.weight", L + "ffn.w_up.weight", "copy"), (F + "mlp.wo.weight", L + "ffn.w_down.weight", "copy")]
        keys.append((F + "mlp.router.classifier.weight", L + "moe.router.weight", "copy"))
        if spec.moe.router.bias:
            keys.append((F + "mlp.router.classifier.bias", L + "moe.router.bias", "copy"))
        keys += [(F + "mlp.experts.expert_{e}.wi.weight", L + "moe.experts.w_up", "expert"),
                 (F + "mlp.experts.expert_{e}.wo.weight", L + "moe.experts.w_down", "expert")]
    return keys


def checkpoint_map(spec: ModelSpec) -> dict[str, Any] | None:
    """The key map for the spec's reference.hf_model_type, or None when there is none to emit."""
    mt = spec.reference.hf_model_type if spec.reference else None
    if mt not in MODEL_TYPES or spec.moe is None or spec.is_encoder_decoder != (mt == "switch_transformers"):
        return None
    if mt == "switch_transformers":
        r = spec.moe.router
        if (r.kind != "token_choice" or r.top_k != 1 or spec.moe.extra_dense_ffn or spec.moe.experts.num_shared
                or spec.ffn.activation not in ("relu", "gelu", "silu") or spec.source_vocab_size):
            return None  # not something transformers' Switch class can hold
        return _finish(spec, mt, _switch_keys(spec), [], [], [])
    keys: list[tuple[str, str, str]] = []
    ignored = ["model.layers.{i}.self_attn.rotary_emb.inv_freq", "model.rotary_emb.inv_freq"]
    load_only: list[str] = []  # accepted by from_hf, not written by save_hf
    copies: list[tuple[str, str]] = []  # written by save_hf as copies of a tensor, ignored on load
    save_if: dict[str, str] = {}  # written by save_hf only in layers that have this tensor too
    att, moe = spec.attention, spec.moe
    dense = any(not spec.is_moe_layer(i) for i in range(spec.num_layers))
    L = "layers.{i}."

    if mt == "llama4_text":
        P = "model.layers.{i}."
        keys += [("model.embed_tokens.weight", "embed.weight", "copy"),
                 ("model.norm.weight", "norm.weight", "copy"),
                 (P + "input_layernorm.weight", L + "attn_norm.weight", "copy"),
                 (P + "post_attention_layernorm.weight", L + "ffn_norm.weight", "copy")]
        for hf, ours in (("q", "wq"), ("k", "wk"), ("v", "wv"), ("o", "wo")):
            keys.append((P + f"self_attn.{hf}_proj.weight", L + f"attn.{ours}.weight",
                         "rope_heads" if hf in "qk" else "copy"))
        F = P + "feed_forward."
        if dense:
            keys += [(F + f"{w}_proj.weight", L + f"ffn.w_{w}.weight", "copy") for w in ("gate", "up", "down")]
        X = L + "moe.experts."
        keys += [(F + "router.weight", L + "moe.router.weight", "copy"),
                 (F + "experts.gate_up_proj", f"{X}w_gate {X}w_up", "chunk_t"),
                 (F + "experts.down_proj", X + "w_down", "t")]
        keys += [(F + f"shared_expert.{w}_proj.weight", L + f"moe.shared.w_{w}.weight", "copy")
                 for w in ("gate", "up", "down")]
        return _finish(spec, mt, keys, ignored, load_only, copies)
    if mt == "dbrx":
        P = "transformer.blocks.{i}."
        keys += [
            ("transformer.wte.weight", "embed.weight", "copy"),
            ("transformer.norm_f.weight", "norm.weight", "copy"),
            (P + "norm_attn_norm.norm_1.weight", L + "attn_norm.weight", "copy"),
            (P + "norm_attn_norm.norm_2.weight", L + "ffn_norm.weight", "copy"),
            (P + "norm_attn_norm.attn.Wqkv.weight", " ".join(L + f"attn.{w}.weight" for w in ("wq", "wk", "wv")),
             "qkv"),
            (P + "norm_attn_norm.attn.out_proj.weight", L + "attn.wo.weight", "copy"),
            (P + "ffn.router.layer.weight", L + "moe.router.weight", "copy"),
            (P + "ffn.experts.mlp.w1", L + "moe.experts.w_gate", "experts_2d"),
            (P + "ffn.experts.mlp.v1", L + "moe.experts.w_up", "experts_2d"),
            (P + "ffn.experts.mlp.w2", L + "moe.experts.w_down", "experts_2d_t"),
        ]
    else:
        P = "model.layers.{i}."
        keys += [
            ("model.embed_tokens.weight", "embed.weight", "copy"),
            ("model.norm.weight", "norm.weight", "copy"),
            (P + "input_layernorm.weight", L + "attn_norm.weight", "copy"),
            (P + "post_attention_layernorm.weight", L + "ffn_norm.weight", "copy"),
        ]
        A = P + "self_attn."
        if isinstance(att, MLASpec):
            if att.q_lora_rank:
                keys += [(A + "q_a_proj.weight", L + "attn.wq_a.weight", "copy"),
                         (A + "q_a_layernorm.weight", L + "attn.q_norm.weight", "copy"),
                         (A + "q_b_proj.weight", L + "attn.wq_b.weight", "rope_q")]
            else:
                keys.append((A + "q_proj.weight", L + "attn.wq.weight", "rope_q"))
            keys += [(A + "kv_a_proj_with_mqa.weight", L + "attn.wkv_a.weight", "rope_kv"),
                     (A + "kv_a_layernorm.weight", L + "attn.kv_norm.weight", "copy"),
                     (A + "kv_b_proj.weight", L + "attn.wkv_b.weight", "copy"),
                     (A + "o_proj.weight", L + "attn.wo.weight", "copy")]
        else:
            assert isinstance(att, GQASpec)
            for hf, ours in (("q", "wq"), ("k", "wk"), ("v", "wv"), ("o", "wo")):
                keys.append((A + f"{hf}_proj.weight", L + f"attn.{ours}.weight", "copy"))
                if (att.qkv_bias if hf != "o" else att.out_bias):
                    keys.append((A + f"{hf}_proj.bias", L + f"attn.{ours}.bias", "copy"))
            if att.qk_norm in ("per_head", "full"):
                keys += [(A + "q_norm.weight", L + "attn.q_norm.weight", "copy"),
                         (A + "k_norm.weight", L + "attn.k_norm.weight", "copy")]
            if att.sinks:
                keys.append((A + "sinks", L + "attn.sinks", "copy"))
        if spec.hybrid_attention is not None:  # MiniMax's lightning layers (the softmax layers use the keys above)
            keys += [(A + "qkv_proj.weight", L + "attn.wqkv.weight", "copy"),
                     (A + "output_gate.weight", L + "attn.w_gate.weight", "copy"),
                     (A + "norm.weight", L + "attn.out_norm.weight", "copy"),
                     (A + "out_proj.weight", L + "attn.wo.weight", "copy")]
            # transformers keeps the decay rates as buffers; the generated model computes them
            ignored += [A + f"{b}" for b in ("slope_rate", "query_decay", "key_decay", "diagonal_decay")]
            # both kinds of layer name their output projection attn.wo: save tells them apart by their inputs
            save_if[A + "o_proj.weight"] = L + "attn.wq.weight"
            save_if[A + "out_proj.weight"] = L + "attn.wqkv.weight"
        if dense:
            keys += [(P + f"mlp.{w}_proj.weight", L + f"ffn.w_{w}.weight", "copy") for w in ("gate", "up", "down")]
        # router
        if mt == "gpt_oss":
            keys += [(P + "mlp.router.weight", L + "moe.router.weight", "copy"),
                     (P + "mlp.router.bias", L + "moe.router.bias", "copy")]
        else:
            keys.append((P + "mlp.gate.weight", L + "moe.router.weight", "copy"))
            if mt in ("mixtral", "minimax"):  # the released name (transformers renames it to mlp.gate)
                keys.append((P + "block_sparse_moe.gate.weight", L + "moe.router.weight", "copy"))
                load_only.append(P + "mlp.gate.weight")
        if moe.balance.aux_free is not None and mt == "deepseek_v3":
            keys.append((P + "mlp.gate.e_score_correction_bias", L + "moe.router.e_score_correction_bias", "copy"))
        # routed experts: the released per-expert layout, and transformers' fused in-memory layout
        X = L + "moe.experts."
        if mt == "gpt_oss":
            keys += [(P + "mlp.experts.gate_up_proj", f"{X}w_gate {X}w_up", "interleave_t"),
                     (P + "mlp.experts.gate_up_proj_bias", f"{X}w_gate_bias {X}w_up_bias", "interleave"),
                     (P + "mlp.experts.down_proj", X + "w_down", "t"),
                     (P + "mlp.experts.down_proj_bias", X + "w_down_bias", "copy")]
        else:
            mixtral_like = mt in ("mixtral", "minimax")
            names = ("w1", "w3", "w2") if mixtral_like else ("gate_proj", "up_proj", "down_proj")
            prefix = "block_sparse_moe" if mixtral_like else "mlp"
            keys += [(P + f"{prefix}.experts.{{e}}.{hf}.weight", X + ours, "expert")
                     for hf, ours in zip(names, ("w_gate", "w_up", "w_down"))]
            fused = [(P + "mlp.experts.gate_up_proj", f"{X}w_gate {X}w_up", "chunk"),
                     (P + "mlp.experts.down_proj", X + "w_down", "copy")]
            keys += fused
            load_only += [hf for hf, _, _ in fused]
        # shared experts
        if moe.experts.num_shared:
            hf_shared = "mlp.shared_expert." if mt == "qwen2_moe" else "mlp.shared_experts."
            keys += [(P + f"{hf_shared}{w}_proj.weight", L + f"moe.shared.w_{w}.weight", "copy")
                     for w in ("gate", "up", "down")]
            if moe.experts.shared_gate:
                keys.append((P + "mlp.shared_expert_gate.weight", L + "moe.shared_gate.weight", "copy"))
        # DeepSeek-V3's MTP modules: model.layers.{num_layers + k}, the block's keys as above
        if spec.mtp is not None and mt == "deepseek_v3":
            M = "mtp.{i}."
            keys += [(P + "enorm.weight", M + "enorm.weight", "copy"),
                     (P + "hnorm.weight", M + "hnorm.weight", "copy"),
                     (P + "eh_proj.weight", M + "eh_proj.weight", "copy"),
                     (P + "shared_head.norm.weight", M + "norm.weight", "copy")]
            ignored += [P + "embed_tokens.weight", P + "shared_head.head.weight"]  # copies of the shared ones
            copies += [(P + "embed_tokens.weight", "embed.weight"), (P + "shared_head.head.weight", "head.weight")]
    return _finish(spec, mt, keys, ignored, load_only, copies, save_if)


def _finish(spec: ModelSpec, mt: str, keys: list[tuple[str, str, str]], ignored: list[str], load_only: list[str],
            copies: list[tuple[str, str]], save_if: dict[str, str] | None = None) -> dict[str, Any]:
    att = spec.attention
    if spec.embedding.tied:
        ignored.append("lm_head.weight")  # tied: the embedding is the head
        # transformers ties Switch's stack embeddings to `shared` too and saves only shared.weight
        load_only += [hf for hf, _, op in keys if op == "same_as"]
    else:
        keys.append(("lm_head.weight", "head.weight", "copy"))
    ops = sorted({op for _, _, op in keys})
    saved = [(hf, op) for hf, _, op in keys if hf not in load_only]
    config, config_error, no_mtp = _export(spec, mt)
    return {
        "model_type": mt,
        "keys": [{"hf": hf, "ours": ours, "op": op} for hf, ours, op in keys],
        "ignored": ignored,
        "load_only": load_only,
        "copies": [{"hf": hf, "ours": ours} for hf, ours in copies],
        "save_if": [{"hf": hf, "ours": ours} for hf, ours in (save_if or {}).items()],
        "ops": ops,
        "save_ops": sorted({"copy" if op == "same_as" else op for _, op in saved}),
        "mla": isinstance(att, MLASpec),
        "mtp": spec.mtp is not None and mt == "deepseek_v3",
        "encdec": spec.is_encoder_decoder,
        # multimodal checkpoints (Llama 4) keep the text model under a prefix, beside towers this model has not
        "prefix": "language_model." if mt == "llama4_text" else None,
        "skip_prefixes": ("vision_model.", "multi_modal_projector.") if mt == "llama4_text" else (),
        # per-expert tensors as released, and transformers' fused in-memory ones, are both mapped
        "both_layouts": bool(load_only) and any(op == "expert" for _, _, op in keys),
        "released_layout": {
            "mixtral": "per-expert w1/w3/w2 under block_sparse_moe",
            "minimax": "per-expert w1/w3/w2 under block_sparse_moe",
            "dbrx": "fused Wqkv and (E*F, D) expert stacks",
            "gpt_oss": "fused, transposed gate_up_proj with gate and up interleaved",
            "switch_transformers": "T5 names, one wi/wo pair per expert",
            "llama4_text": "fused experts: gate_up_proj (E, D, 2F) and down_proj (E, F, D), used as x @ w",
        }.get(mt, "one tensor per expert"),
        # config.json for save_hf: exactly what `moezoo export-hf` writes (a Python literal), or why there is none
        "config": config,
        "config_error": config_error,
        # DeepSeek-V3 loaded without its MTP modules: the config.json keys that change (None: not expressible)
        "no_mtp_config": no_mtp,
    }


def _export(spec: ModelSpec, mt: str) -> tuple[str | None, str | None, str | None]:
    """(config.json of `moezoo export-hf` as a Python literal, or None with the reason; the no-MTP changes)."""
    from moezoo.hf.convert import HFError, config_json, export_spec

    try:
        config = json.loads(config_json(export_spec(spec, mt).config))  # the key order export-hf writes
    except HFError as exc:
        return None, f"moezoo export-hf cannot write a {mt} config.json for this spec: " + "; ".join(exc.messages), None
    try:
        literal = py_literal(config)
    except ValueError as exc:
        return None, f"the {mt} config.json of this spec is not plain JSON ({exc})", None
    no_mtp = None
    if spec.mtp is not None and mt == "deepseek_v3":
        try:
            without = json.loads(config_json(export_spec(spec.model_copy(update={"mtp": None}), mt).config))
        except HFError:
            without = None
        if without is not None and list(without) == list(config):
            no_mtp = py_literal({k: v for k, v in without.items() if v != config[k]})
    return literal, None, no_mtp


def py_literal(value: Any) -> str:
    """A JSON value as Python source; strings through ascii(), so no spec text reaches the file unescaped."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a JSON number")
        return repr(value)
    if isinstance(value, str):
        return ascii(value)
    if isinstance(value, list):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{ascii(str(k))}: {py_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"{type(value).__name__} is not a JSON value")
