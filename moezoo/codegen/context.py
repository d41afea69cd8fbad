"""Render context: everything the templates need, resolved in Python from the spec and its graph.

Templates stay dumb: they test flags and print values prepared here. Every value that reaches
generated code is either a number/bool from the validated spec (printed with repr) or text from the
spec passed through `doc_text` (no control characters by validation; quotes and backslashes escaped).
"""

from __future__ import annotations

import re
from typing import Any

from moezoo import __version__
from moezoo.graph import ModelGraph
from moezoo.spec.schema import (
    GQASpec,
    JitterSpec,
    Llama3Scaling,
    LinearScaling,
    MLASpec,
    ModelSpec,
    RopeSpec,
    T5RelativeSpec,
    TokenChoiceRouter,
    YarnScaling,
)


class UnsupportedFeature(Exception):
    """The spec is valid but the generator cannot emit code for one of its features yet."""

    def __init__(self, feature: str, path: str = ""):
        self.feature = feature
        self.path = path
        super().__init__(f"not supported yet: {feature}")


def doc_text(text: str) -> str:
    """Spec text made safe inside a triple-quoted docstring or a comment."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text)
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def py(value: Any) -> str:
    """A Python literal for a validated spec value."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    raise TypeError(f"no literal for {type(value).__name__}")


def unsupported(spec: ModelSpec) -> list[UnsupportedFeature]:
    """Features of a valid spec that the model.py generator does not implement yet."""
    out: list[UnsupportedFeature] = []
    if spec.is_encoder_decoder:
        att = spec.attention
        if not isinstance(att, GQASpec) or (att.num_kv_heads or att.num_heads) != att.num_heads:
            out.append(UnsupportedFeature("encoder_decoder with attention other than plain MHA", "attention"))
        elif att.qkv_bias or att.out_bias or att.qk_norm != "none" or att.sinks or att.clip_qkv or att.logit_softcap \
                or att.sliding_window or att.chunked:
            out.append(UnsupportedFeature("encoder_decoder attention options beyond T5's", "attention"))
        if isinstance(spec.position, RopeSpec):
            out.append(UnsupportedFeature("encoder_decoder with rope", "position.kind"))
        if spec.norm.placement != "pre":
            out.append(UnsupportedFeature(f"encoder_decoder with norm.placement {spec.norm.placement}", "norm.placement"))
        if spec.embedding.input_multiplier != 1.0 or spec.embedding.logit_softcap is not None:
            out.append(UnsupportedFeature("encoder_decoder embedding multipliers / soft-capping", "embedding"))
    if not isinstance(spec.position, RopeSpec) and not spec.is_encoder_decoder:
        out.append(UnsupportedFeature(f"position.kind {spec.position.kind} in a decoder-only model", "position.kind"))
    if spec.norm.placement == "post" and spec.moe is not None and spec.moe.extra_dense_ffn:
        out.append(UnsupportedFeature("norm.placement post with moe.extra_dense_ffn", "norm.placement"))
    att = spec.attention
    if isinstance(att, GQASpec) and att.sliding_window is not None and att.chunked is not None:
        out.append(UnsupportedFeature("attention.sliding_window together with attention.chunked", "attention.chunked"))
    if spec.moe is not None:
        r = spec.moe.router
        if not isinstance(r, TokenChoiceRouter):
            out.append(UnsupportedFeature(f"moe.router.kind {r.kind}", "moe.router.kind"))
        if spec.moe.layers.invert:
            out.append(UnsupportedFeature("moe.layers.invert", "moe.layers.invert"))
    return out


def _selector(method: str, prefix: str, sel: Any, doc: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """ModelConfig fields for a LayerSelector (`<prefix>_every` / `_offset` / `_start`, or `<prefix>_pattern`) and
    the is_... method that reads them."""
    out: dict[str, Any] = {"method": method, "invert": sel.invert, "doc": doc, "prefix": prefix,
                           "pattern": sel.pattern is not None, "start": sel.start > 0}
    if sel.pattern is not None:
        return [_field(f"{prefix}_pattern", sel.pattern, "one character per layer: M, 1 or x selects it")], out
    fields = [_field(f"{prefix}_every", sel.every), _field(f"{prefix}_offset", sel.offset)]
    if sel.start:
        fields.append(_field(f"{prefix}_start", sel.start, "layers below this are never selected"))
    return fields, out


def _field(name: str, value: Any, comment: str = "", type_: str | None = None) -> dict[str, str]:
    if type_ is None:
        type_ = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value), "tuple")
    return {"name": name, "type": type_, "value": py(value), "comment": doc_text(comment)}


def build_context(spec: ModelSpec, graph: ModelGraph, *, spec_label: str, spec_sha256: str,
                  with_smoke: bool = True) -> dict[str, Any]:
    problems = unsupported(spec)
    if problems:
        raise problems[0]
    att, pos, moe = spec.attention, spec.position, spec.moe
    c: dict[str, Any] = {"version": __version__, "spec_label": doc_text(spec_label), "spec_sha256": spec_sha256}
    c["title"] = doc_text(spec.name)
    c["description"] = doc_text(spec.description)
    c["sources"] = [doc_text(u) for u in (spec.reference.sources if spec.reference else [])]

    groups: list[dict[str, Any]] = []
    checks: list[dict[str, str]] = []

    # -- skeleton
    skeleton = [
        _field("vocab_size", spec.vocab_size, "V"),
        _field("model_dim", spec.model_dim, "D, the residual stream width"),
        _field("num_layers", spec.num_layers),
        _field("max_seq_len", spec.max_seq_len, "context length the model was built for"),
        _field("norm_eps", spec.norm.eps),
        *([_field("residual_alpha", spec.norm.residual_alpha, "post-norm: x = alpha * norm(x) + f(norm(x))")]
          if spec.norm.placement == "post" else []),
    ]
    if spec.embedding.input_multiplier != 1.0:
        skeleton.append(_field("input_multiplier", spec.embedding.input_multiplier, "embeddings are scaled by this"))
    if spec.embedding.logit_multiplier != 1.0:
        skeleton.append(_field("logit_multiplier", spec.embedding.logit_multiplier, "final hidden state scaled before the head"))
    if spec.embedding.logit_softcap is not None:
        skeleton.append(_field("logit_softcap", spec.embedding.logit_softcap, "logits = cap * tanh(logits / cap)"))
    groups.append({"title": "skeleton", "fields": skeleton})

    # -- attention
    a: dict[str, Any] = {"kind": att.kind, "sinks": False, "logit_softcap": None, "q_lora_rank": None}
    att_fields = [_field("num_heads", att.num_heads, "H")]
    if isinstance(att, MLASpec):
        a["q_lora_rank"] = att.q_lora_rank
        if att.q_lora_rank:
            att_fields.append(_field("q_lora_rank", att.q_lora_rank, "rank of the compressed query c_Q"))
        att_fields += [
            _field("kv_lora_rank", att.kv_lora_rank, "rank of the KV latent c_KV (what inference caches)"),
            _field("qk_nope_head_dim", att.qk_nope_head_dim, "per-head query/key dims without rope"),
            _field("qk_rope_head_dim", att.qk_rope_head_dim, "decoupled rope dims (one rope key for all heads)"),
            _field("v_head_dim", att.v_head_dim),
        ]
        c["attn_ctor"] = "MLA(config)"
        if att.softmax_scale is not None:
            raise UnsupportedFeature("attention.softmax_scale with MLA", "attention.softmax_scale")
    else:
        kv = att.num_kv_heads or att.num_heads
        hd = att.head_dim or spec.model_dim // att.num_heads
        att_fields += [
            _field("num_kv_heads", kv, "H_kv: key/value heads shared by groups of query heads" if kv < att.num_heads else "H_kv = H (multi-head attention)"),
            _field("head_dim", hd),
        ]
        checks.append({"cond": "self.num_heads % self.num_kv_heads == 0",
                       "message": 'f"num_heads {self.num_heads} not divisible by num_kv_heads {self.num_kv_heads}"'})
        a.update(qkv_bias=att.qkv_bias, out_bias=att.out_bias, qk_norm=att.qk_norm, clip_qkv=att.clip_qkv,
                 logit_softcap=att.logit_softcap, sinks=att.sinks)
        if att.clip_qkv is not None:
            att_fields.append(_field("clip_qkv", att.clip_qkv, "q, k, v are clamped to [-clip_qkv, clip_qkv]"))
        if att.logit_softcap is not None:
            att_fields.append(_field("attn_logit_softcap", att.logit_softcap, "attention logits soft-capped"))
        if att.softmax_scale is not None:
            att_fields.append(_field("softmax_scale", att.softmax_scale))
            a["scale_expr"] = "config.softmax_scale"
        else:
            a["scale_expr"] = "hd**-0.5"
        doc = ("Grouped-query attention: H query heads share H_kv key/value heads (Ainslie et al. 2023)."
               if kv < att.num_heads else "Multi-head attention (Vaswani et al. 2017).")
        extras = []
        if att.qk_norm != "none":
            extras.append("QK-norm")
        if att.clip_qkv:
            extras.append("q/k/v clipping")
        if att.sinks:
            extras.append("attention sinks")
        if att.sliding_window:
            extras.append("sliding-window layers")
        if att.chunked:
            extras.append("chunked local attention on some layers")
        if att.temperature_tuning:
            extras.append("query temperature tuning on NoPE layers")
        if att.logit_softcap:
            extras.append("logit soft-capping")
        if extras:
            doc = doc[:-1] + ", with " + ", ".join(extras) + "."
        a["doc"] = doc
    gqa = isinstance(att, GQASpec)
    c["window"] = gqa and att.sliding_window is not None
    c["chunked"] = gqa and att.chunked is not None
    c["nope"] = isinstance(pos, RopeSpec) and pos.nope_layers is not None
    # Attention takes its layer index only where a per-layer rule (window, chunk, NoPE) reads it.
    c["attn_layer_aware"] = c["window"] or c["chunked"] or c["nope"]
    if gqa:
        c["attn_ctor"] = "Attention(config, layer_id)" if c["attn_layer_aware"] else "Attention(config)"
    c["temperature"] = gqa and att.temperature_tuning is not None
    selectors = []
    if c["window"]:
        sw = att.sliding_window
        att_fields.append(_field("sliding_window", sw.size, "keys visible to a query on sliding-window layers"))
        more, sel = _selector("is_sliding_window_layer", "sliding_window", sw.layers,
                              "Layers that attend within the sliding window.")
        att_fields += more
        selectors.append(sel)
    if c["chunked"]:
        ch = att.chunked
        att_fields.append(_field("attention_chunk_size", ch.size, "chunked layers: a query sees the keys of its own chunk"))
        more, sel = _selector("is_chunked_layer", "chunked", ch.layers,
                              "Layers that attend causally within chunks of attention_chunk_size"
                              + (" (every layer except those the rule below selects)." if ch.layers.invert else "."))
        att_fields += more
        selectors.append(sel)
    if c["nope"]:
        more, sel = _selector("is_nope_layer", "nope_layer", pos.nope_layers,
                              "Layers that use no position encoding (NoPE)"
                              + (" (every layer except those the rule below selects)." if pos.nope_layers.invert else "."))
        att_fields += more
        selectors.append(sel)
    if c["temperature"]:
        tt = att.temperature_tuning
        att_fields += [_field("attn_temperature_scale", tt.scale, "NoPE layers: q *= 1 + scale * log(1 + floor((pos+1) / floor))"),
                       _field("attn_temperature_floor", tt.floor_scale, "positions per temperature step")]
    c["lightning"] = spec.hybrid_attention is not None
    if c["lightning"]:
        hy = spec.hybrid_attention
        lightning_fields = [_field("lightning_num_heads", hy.num_heads, "heads of the linear-attention layers"),
                            _field("lightning_head_dim", hy.head_dim),
                            _field("lightning_block_size", hy.block_size, "block length of the blockwise computation")]
        more, sel = _selector("is_softmax_attention_layer", "softmax_layer", hy.softmax_layers,
                              "Layers that keep softmax attention; the others use lightning (linear) attention.")
        lightning_fields += more
        selectors.append(sel)
        c["attn_ctor"] = (f"{c['attn_ctor']} if config.is_softmax_attention_layer(layer_id) "
                          "else LightningAttention(config, layer_id)")
    c["layer_selectors"] = selectors
    c["layer_aware"] = c["attn_layer_aware"] or c["lightning"]  # Block takes the layer index
    c["att_pos"] = c["chunked"] or c["temperature"]  # the attention cache counts positions
    c["sdpa_ok"] = not (a["sinks"] or a["logit_softcap"])
    groups.append({"title": f"attention ({'MLA' if att.kind == 'mla' else att.kind.upper()})", "fields": att_fields})
    if c["lightning"]:
        groups.append({"title": "lightning attention (MiniMax-01)", "fields": lightning_fields})
    c["att"] = a

    # -- encoder-decoder skeleton (T5 style)
    c["encdec"] = spec.is_encoder_decoder
    c["rope"] = isinstance(pos, RopeSpec)
    c["rel_bias"] = isinstance(pos, T5RelativeSpec)
    c["source_vocab"] = spec.source_vocab_size is not None
    if spec.is_encoder_decoder:
        encdec_fields = [_field("num_encoder_layers", spec.num_encoder_layers)]
        if spec.source_vocab_size is not None:
            encdec_fields.append(_field("source_vocab_size", spec.source_vocab_size, "vocabulary of the encoder input"))
        if isinstance(pos, T5RelativeSpec):
            encdec_fields += [_field("rel_num_buckets", pos.num_buckets, "relative-position buckets"),
                              _field("rel_max_distance", pos.max_distance, "offsets beyond share the last bucket")]
        encdec_fields += [_field("decoder_start_token_id", 0, "the decoder reads this before the first target"),
                          _field("pad_token_id", 0)]
        groups.append({"title": "encoder-decoder", "fields": encdec_fields})
        c["attn_ctor"] = "Attention(config)"
    if isinstance(pos, RopeSpec):
        _rope_context(c, spec, groups)
    else:
        c["rope_scaling"], c["partial_rotary"] = None, False

    # -- norms, FFN
    c["norm_kind"] = spec.norm.kind
    c["norm_bias"] = spec.norm.bias
    c["norm_class"] = "RMSNorm" if spec.norm.kind == "rmsnorm" else "LayerNorm"
    c["needs_rmsnorm"] = (isinstance(att, MLASpec) or (isinstance(att, GQASpec) and att.qk_norm in ("per_head", "full"))
                          or spec.hybrid_attention is not None)
    c["sandwich"] = spec.norm.placement == "sandwich"
    c["post_norm"] = spec.norm.placement == "post"
    ffn = spec.ffn
    c["activation"] = ffn.activation
    c["gated"] = ffn.num_matrices == 3
    c["ffn_bias"] = ffn.bias
    c["clamp_limit"] = py(ffn.clamp_limit) if ffn.clamp_limit is not None else None
    c["glu_alpha"] = py(ffn.glu_alpha)
    c["act_doc"] = {
        "swiglu": "SwiGLU: silu(gate) * up (Shazeer 2020).",
        "geglu": "GeGLU: gelu(gate) * up (Shazeer 2020).",
        "reglu": "ReGLU: relu(gate) * up.",
        "clamped_swiglu": "gpt-oss's clamped SwiGLU: gate clamped above, up clamped both ways, gate * sigmoid(alpha * gate) * (up + 1).",
        "relu": "ReLU.",
        "gelu": "GELU.",
        "silu": "SiLU.",
    }[ffn.activation]
    ffn_fields = [_field("ffn_hidden_dim", ffn.hidden_dim, "width of the dense FFN layers")]
    groups.append({"title": "feed-forward", "fields": ffn_fields})

    # -- MoE
    c["moe"] = moe is not None
    c["capacity"] = False
    c["aux_free"] = False
    c["shared"] = c["shared_gate"] = c["extra_dense_ffn"] = c["expert_bias"] = c["expert_dropout"] = False
    c["weight_on_input"] = c["second_sampled"] = False
    c["aux_loss"] = c["seq_aux"] = c["z_loss"] = c["device_groups"] = c["comm_balance"] = False
    c["layer_reduction"] = "sum"
    c["layer_loss_keys"] = []
    c["loss_weights"] = []
    c["moe_pattern"] = False
    # Blocks choose between MoE and a dense FFN only if both kinds occur (in either stack, or in the MTP block).
    c["mixed_ffn"] = moe is not None and (
        spec.is_encoder_decoder
        or not all(spec.is_moe_layer(i) for i in range(spec.num_layers))
        or (spec.mtp is not None and not spec.mtp.moe_layer))
    if moe is not None:
        r = moe.router
        assert isinstance(r, TokenChoiceRouter)
        ex, b = moe.experts, moe.balance
        sel = moe.layers
        moe_fields = [
            _field("num_experts", ex.num_routed, "E: routed experts per MoE layer"),
            _field("top_k", r.top_k, "K: experts per token"),
            _field("expert_hidden_dim", ex.hidden_dim, "F: width of one routed expert"),
        ]
        if not c["mixed_ffn"]:
            pass  # every layer is an MoE layer: no selector fields
        elif sel.pattern is not None:
            c["moe_pattern"] = True
            moe_fields.append(_field("moe_layer_pattern", sel.pattern, "one character per layer: M = MoE, D = dense"))
            c["moe_layers_doc"] = "Layer i is MoE where moe_layer_pattern[i] is 'M'."
        else:
            moe_fields += [_field("moe_layer_start", sel.start, "layers before this are dense"),
                           _field("moe_layer_every", sel.every), _field("moe_layer_offset", sel.offset)]
            c["moe_layers_doc"] = ("MoE layers: i >= moe_layer_start and i % moe_layer_every == moe_layer_offset"
                                   + (f" (here: the first {sel.start} layers are dense, the rest MoE)." if sel.every == 1 and sel.start
                                      else "."))
        if ex.num_shared:
            c["shared"] = True
            moe_fields += [_field("num_shared_experts", ex.num_shared, "always-on experts, fused into one FFN"),
                           _field("shared_hidden_dim", ex.shared_hidden_dim or ex.hidden_dim, "width of one shared expert")]
            c["shared_gate"] = ex.shared_gate
        c["expert_bias"] = ex.bias
        c["extra_dense_ffn"] = moe.extra_dense_ffn
        if b.expert_dropout:
            c["expert_dropout"] = True
            moe_fields.append(_field("expert_dropout", b.expert_dropout))
        router: dict[str, Any] = {
            "bias": r.bias, "scoring": r.scoring, "softmax_after_topk": r.softmax_after_topk,
            "renormalize": r.renormalize, "scaling": r.scaling_factor != 1.0, "aux_free": b.aux_free is not None,
            "groups": r.groups is not None, "group_score": r.groups.group_score if r.groups else None,
            "noise": r.noise.kind if r.noise else None,
        }
        if r.scaling_factor != 1.0:
            moe_fields.append(_field("routed_scaling_factor", r.scaling_factor, "routed gates are multiplied by this"))
        if r.groups is not None:
            moe_fields += [_field("num_groups", r.groups.num_groups, "experts form this many equal groups"),
                           _field("top_groups", r.groups.top_groups, "a token may only use experts of its best groups")]
            router["groups_doc"] = (
                "Group-limited routing (DeepSeek-V3): score each group by the sum of its top-2 experts, keep the "
                "best `top_groups` groups, hide the rest." if r.groups.group_score == "top2_sum" else
                "Device-limited routing (DeepSeek-V2, 2.1.3): score each group (device) by its best expert, keep "
                "the best `top_groups` groups, hide the rest.")
        if isinstance(r.noise, JitterSpec):
            moe_fields.append(_field("router_jitter_eps", r.noise.eps, "training-time multiplicative jitter"))
        if r.capacity is not None:
            c["capacity"] = True
            moe_fields += [_field("capacity_factor_train", r.capacity.train_factor),
                           _field("capacity_factor_eval", r.capacity.eval_factor),
                           _field("min_capacity", r.capacity.min_capacity)]
        c["weight_on_input"] = r.weight_on_input
        c["second_sampled"] = r.second_expert_sampled
        c["aux_free"] = b.aux_free is not None
        if b.aux_free is not None:
            moe_fields.append(_field("bias_update_rate", b.aux_free.update_rate, "gamma of the auxiliary-loss-free bias update"))
        # balance losses
        c["layer_reduction"] = b.layer_reduction
        c["aux_style"] = b.aux_loss_style
        keys = []
        if b.aux_loss_weight:
            c["aux_loss"] = True
            moe_fields.append(_field("aux_loss_weight", b.aux_loss_weight, "alpha of the expert-level balance loss"))
            if b.layer_reduction == "sum":
                c["loss_weights"].append("aux_loss_weight")
                keys.append("aux")
        if b.sequence_aux_loss_weight:
            c["seq_aux"] = True
            moe_fields.append(_field("sequence_aux_loss_weight", b.sequence_aux_loss_weight, "alpha of the sequence-wise balance loss"))
            c["loss_weights"].append("sequence_aux_loss_weight")
            keys.append("seq_aux")
        if b.device_balance is not None and b.device_balance.weight:
            c["device_groups"] = True
            moe_fields += [_field("device_balance_weight", b.device_balance.weight, "alpha_2"),
                           _field("num_devices", b.device_balance.num_devices)]
            c["loss_weights"].append("device_balance_weight")
            keys.append("device_aux")
        if b.comm_balance is not None and b.comm_balance.weight:
            c["comm_balance"] = True
            moe_fields += [_field("comm_balance_weight", b.comm_balance.weight, "alpha_3"),
                           _field("comm_num_devices", b.comm_balance.num_devices),
                           _field("top_devices", b.comm_balance.top_devices, "M: devices a token may reach")]
            c["loss_weights"].append("comm_balance_weight")
            keys.append("comm_aux")
        if b.z_loss_weight:
            c["z_loss"] = True
            moe_fields.append(_field("z_loss_weight", b.z_loss_weight, "router z-loss weight"))
            if b.layer_reduction == "sum":
                c["loss_weights"].append("z_loss_weight")
                keys.append("z")
        c["layer_loss_keys"] = keys
        groups.append({"title": "mixture of experts", "fields": moe_fields})
        router["doc"] = _router_doc(spec)
        c["router"] = router
        c["moe_doc"] = _moe_doc(spec)
        checks.append({"cond": "self.top_k <= self.num_experts",
                       "message": 'f"top_k {self.top_k} exceeds num_experts {self.num_experts}"'})
        if r.groups is not None:
            checks.append({"cond": "self.num_experts % self.num_groups == 0",
                           "message": 'f"num_groups {self.num_groups} must divide num_experts {self.num_experts}"'})

    # -- MTP
    c["mtp"] = spec.mtp is not None
    if spec.mtp is not None:
        groups.append({"title": "multi-token prediction", "fields": [
            _field("mtp_depth", spec.mtp.depth, "D: extra tokens predicted, one module each"),
            _field("mtp_loss_weight", spec.mtp.loss_weight, "lambda"),
        ]})
        c["mtp_moe"] = "True" if spec.mtp.moe_layer else "False"

    c["tied"] = spec.embedding.tied
    c["input_multiplier"] = spec.embedding.input_multiplier != 1.0
    c["logit_multiplier"] = spec.embedding.logit_multiplier != 1.0
    c["logit_softcap"] = spec.embedding.logit_softcap is not None
    # FeedForward is emitted only where some layer, shared expert or extra sub-layer is a dense FFN.
    c["needs_ffn"] = not c["moe"] or c["mixed_ffn"] or c["shared"] or c["extra_dense_ffn"]
    c["needs_math"] = c.get("rope_scaling") in ("yarn", "llama3") or c["rel_bias"] or c["capacity"]
    if isinstance(att, MLASpec):
        c["cache_doc"] = "MLA: the latent c_KV and the shared rope key"
    else:
        kinds = ["keys and values" + (" (the last `sliding_window` on window layers)" if c["window"] else "")
                 + (" (the current chunk on chunked layers)" if c["chunked"] else "")]
        if c["lightning"]:
            kinds.append("a d x d state per head on lightning layers")
        c["cache_doc"] = "; ".join(kinds)
    c["config_groups"] = groups
    c["config_checks"] = checks
    c["block_doc"] = _block_doc(spec)
    c["summary_lines"] = _summary(spec)
    c["gmm"] = _gmm_call(spec)
    c["smoke_overrides"] = smoke_overrides(spec) if with_smoke else ""

    # -- Model.flops_per_token (templates/partials/train_api.py.j2), train.py's MFU -----------------------
    # FLOPs per token for train.py's MFU figure as a function of the sequence length S, in the default (DeepSeek)
    # convention: forward = weight matmuls a token touches + sum over attention layers of
    # 2 * H * (d_qk + d_v) * mean_context(S, window); train = 3 x forward. `weights_*` is the S-independent
    # part, `attn_*` (coefficient, window, "causal" | "chunked" | "full") triples; `train_flops_per_token` the
    # report's figure at S_ref.
    # Skipped for the field-only contexts of smoke_overrides (with_smoke=False), which render nothing.
    if not with_smoke:
        return c
    from moezoo.accounting import _core_flops, account

    S_ref = 4096
    flops = account(spec, seq_len=S_ref)["flops"]
    train: dict[str, Any] = {"flops_seq_len": S_ref, "train_flops_per_token": py(float(flops["train_per_token"]))}
    for part, mtp, forward in (("main", False, flops["forward_per_token"]), ("mtp", True, flops["mtp_forward_per_token"])):
        coefs: dict[tuple[int | None, str], float] = {}
        core_at_ref = 0.0
        for mod in graph.modules(mtp=mtp):
            core = mod.get("core")
            if core is None or core.kind == "linear":  # linear attention does not grow with S: a constant
                continue
            mode = ("chunked" if core.chunked else "causal") if core.kind == "causal" else "full"
            key = (core.window, mode)
            coefs[key] = coefs.get(key, 0.0) + 2.0 * core.num_heads * (core.qk_dim + core.v_dim)
            core_at_ref += _core_flops(core, S_ref, True)
        train[f"weights_{part}"] = py(float(forward - core_at_ref))
        pairs = sorted(coefs.items(), key=lambda kv: (kv[0][0] is not None, kv[0][0] or 0, kv[0][1]))
        train[f"attn_{part}"] = "(" + "".join(f"({py(coef)}, {py(w)}, {py(m)}), " for (w, m), coef in pairs) + ")"
    c["train"] = train

    # -- Hugging Face checkpoints (templates/hf.py.j2, and the thin methods of templates/partials/hf.py.j2) --
    # The literal HF -> model key map for the spec's reference.hf_model_type, its layout conversions and the
    # config.json export-hf writes, computed in moezoo.hf.keymap; None when the spec names no transformers
    # model_type the loader knows (no hf.py, no from_hf / save_hf are emitted then).
    from moezoo.hf.keymap import checkpoint_map

    c["hf"] = checkpoint_map(spec)
    return c


def _rope_context(c: dict[str, Any], spec: ModelSpec, groups: list[dict[str, Any]]) -> None:
    """Rotary embedding fields and flags (the rotary width is the MLA rope dims or the head / rotary dims)."""
    att, pos = spec.attention, spec.position
    assert isinstance(pos, RopeSpec)
    if isinstance(att, MLASpec):
        rotary_field = "qk_rope_head_dim"
    else:
        rotary_field = "rotary_dim" if pos.rotary_dim else "head_dim"
    rotary_expr = rotary_field
    rope_fields = [_field("rope_theta", pos.theta)]
    if pos.rotary_dim:
        rope_fields.append(_field("rotary_dim", pos.rotary_dim, "only the first rotary_dim dims of a head rotate"))
    sc = pos.scaling
    c["rope_scaling"] = sc.kind if sc is not None else None
    c["yarn_cos_scale"] = False
    c["rope_truncate"] = isinstance(sc, YarnScaling) and sc.truncate
    if isinstance(sc, YarnScaling):
        rope_fields += [_field("rope_factor", sc.factor, "YaRN context-extension factor s"),
                        _field("rope_original_max_seq_len", sc.original_max_seq_len),
                        _field("rope_beta_fast", sc.beta_fast), _field("rope_beta_slow", sc.beta_slow)]
        # cos and sin carry mscale(s, mscale) / mscale(s, mscale_all_dim): folded away where that is exactly 1
        c["yarn_cos_scale"] = sc.mscale != sc.mscale_all_dim
        if c["yarn_cos_scale"]:
            rope_fields.append(_field("rope_mscale", sc.mscale))
        if c["yarn_cos_scale"] or isinstance(att, MLASpec):  # MLA also sharpens its softmax with mscale_all_dim
            rope_fields.append(_field("rope_mscale_all_dim", sc.mscale_all_dim))
    elif isinstance(sc, Llama3Scaling):
        rope_fields += [_field("rope_factor", sc.factor), _field("rope_original_max_seq_len", sc.original_max_seq_len),
                        _field("rope_low_freq_factor", sc.low_freq_factor),
                        _field("rope_high_freq_factor", sc.high_freq_factor)]
    elif isinstance(sc, LinearScaling):
        rope_fields.append(_field("rope_factor", sc.factor))
    groups.append({"title": "rotary position embedding", "fields": rope_fields})
    c["rotary_dim_field"], c["rotary_dim_expr"] = rotary_field, rotary_expr
    c["partial_rotary"] = pos.rotary_dim is not None and isinstance(att, GQASpec) and pos.rotary_dim < (att.head_dim or spec.model_dim // att.num_heads)


def _gmm_call(spec: ModelSpec):
    bias = spec.moe is not None and spec.moe.experts.bias

    def call(x: str, w: str) -> str:
        expr = f"grouped_mm({x}, self.{w}, offsets)"
        return f"{expr} + self.{w}_bias[expert]" if bias else expr

    return call


def _router_doc(spec: ModelSpec) -> str:
    r = spec.moe.router
    parts = []
    if r.softmax_after_topk:
        parts.append("Top-k of the logits, then a softmax over the k chosen (Mixtral / gpt-oss style)")
    elif r.scoring == "sigmoid":
        parts.append("Sigmoid affinities s = sigmoid(x . e_i), top-k")
    else:
        parts.append("Softmax affinities s = softmax(x . e_i), top-k")
    if r.groups is not None:
        parts.append(f"within the best {r.groups.top_groups} of {r.groups.num_groups} expert groups")
    if spec.moe.balance.aux_free is not None:
        parts.append("chosen by score + a load-balancing bias that never enters the gate")
    if r.renormalize:
        parts.append("gates renormalised to sum to 1")
    if r.scaling_factor != 1.0:
        parts.append(f"then scaled by {r.scaling_factor:g}")
    return ", ".join(parts) + "."


def _moe_doc(spec: ModelSpec) -> str:
    ex = spec.moe.experts
    r = spec.moe.router
    text = f"Mixture of experts: each token uses {r.top_k} of {ex.num_routed} routed experts"
    if ex.num_shared:
        text += f" plus {ex.num_shared} always-on shared expert{'s' if ex.num_shared > 1 else ''}"
    # Llama 4 scales the expert's input by the routing score instead of its output (differs for a nonlinear FFN)
    text += ". h = sum_k FFN_{e_k}(g_k x)" if r.weight_on_input else ". h = sum_k g_k FFN_{e_k}(x)"
    if ex.num_shared:
        text += " + FFN_shared(x)"
    return text + "."


def _block_doc(spec: ModelSpec) -> str:
    if spec.norm.placement == "post":
        return ("Post-norm block (MiniMax-01): h = norm(x), x = alpha * h + attn(h); then h = norm(x), "
                "x = alpha * h + ffn(h). The residual branch starts after the norm; alpha > 1 (DeepNorm) "
                "weights it up so deep stacks train stably.")
    if spec.norm.placement == "sandwich":
        return "Sandwich-norm block: x + norm(attn(norm(x))), then x + norm(ffn(norm(x))) (Grok-1)."
    return "Pre-norm block: x + attn(norm(x)), then x + ffn(norm(x)) (the FFN is MoE on MoE layers)."


def _summary(spec: ModelSpec) -> list[str]:
    lines = []
    att = spec.attention
    if isinstance(att, MLASpec):
        lines.append(f"Attention: multi-head latent attention, {att.num_heads} heads, KV latent rank {att.kv_lora_rank}"
                     + (f", query rank {att.q_lora_rank}" if att.q_lora_rank else "") + ".")
    else:
        kv = att.num_kv_heads or att.num_heads
        lines.append(f"Attention: {att.num_heads} query heads, {kv} key/value heads, head dim "
                     f"{att.head_dim or spec.model_dim // att.num_heads}.")
    if spec.moe is not None:
        ex, r = spec.moe.experts, spec.moe.router
        where = ", ".join(f"{sum(1 for i in range(n) if spec.is_moe_layer(i))} of {n} {stack} layers"
                          for stack, n in spec.stacks()) if spec.is_encoder_decoder else \
            f"{sum(1 for i in range(spec.num_layers) if spec.is_moe_layer(i))} of {spec.num_layers} layers"
        lines.append(f"MoE: {where}, top-{r.top_k} of {ex.num_routed} experts"
                     + (f" + {ex.num_shared} shared" if ex.num_shared else "") + ".")
    if spec.mtp is not None:
        lines.append(f"Multi-token prediction: depth {spec.mtp.depth}, loss weight {spec.mtp.loss_weight:g}.")
    return [doc_text(x) for x in lines]


def smoke_overrides(spec: ModelSpec) -> str:
    """ModelConfig(...) arguments that make the __main__ smoke test small enough for any CPU."""
    from moezoo.codegen.tiny import tiny_spec
    from moezoo.graph import lower

    def fields(s: ModelSpec) -> dict[str, str]:
        ctx = build_context(s, lower(s), spec_label="", spec_sha256="", with_smoke=False)
        return {f["name"]: f["value"] for g in ctx["config_groups"] for f in g["fields"]}

    full, tiny = fields(spec), fields(tiny_spec(spec))
    return ", ".join(f"{k}={v}" for k, v in tiny.items() if k in full and full[k] != v)
