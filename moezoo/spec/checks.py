"""Cross-field rules of the spec language.

`errors(spec)` are rules a spec must satisfy (it is rejected otherwise); `warnings(spec)` flag options
that are legal but have no effect for the configuration chosen. Every message names both fields and
both values, so the user can fix it without reading the schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moezoo.spec.diagnostics import Diagnostic, SpecCheckFailed

if TYPE_CHECKING:
    from moezoo.spec.schema import LayerSelector, ModelSpec


def _selector_errors(sel: "LayerSelector", path: tuple, spec: "ModelSpec", out: list[Diagnostic]) -> None:
    stacks = spec.stacks()
    if sel.pattern is not None:
        for stack, n in stacks:
            if len(sel.pattern) != n:
                what = "num_layers" if stack == "decoder" else "num_encoder_layers"
                out.append(Diagnostic(
                    f"pattern has {len(sel.pattern)} entries but {what} is {n}", path + ("pattern",)))
                break
        return
    if sel.offset >= sel.every:
        out.append(Diagnostic(
            f"offset {sel.offset} must be smaller than {'.'.join(map(str, path))}.every ({sel.every})",
            path + ("offset",)))


def errors(spec: "ModelSpec") -> list[Diagnostic]:  # noqa: C901 - one flat list of rules reads best
    from moezoo.spec.schema import GQASpec, MLASpec, RopeSpec, TokenChoiceRouter

    out: list[Diagnostic] = []
    E = Diagnostic

    # -- skeleton
    if spec.is_encoder_decoder and spec.num_encoder_layers == 0:
        out.append(E("an encoder_decoder model needs num_encoder_layers >= 1 (got 0)", ("num_encoder_layers",)))
    if not spec.is_encoder_decoder and spec.num_encoder_layers != 0:
        out.append(E(f"{spec.num_encoder_layers} encoder layers given but architecture is decoder_only",
                     ("num_encoder_layers",)))
    if spec.source_vocab_size is not None and not spec.is_encoder_decoder:
        out.append(E(f"source_vocab_size {spec.source_vocab_size} needs architecture encoder_decoder",
                     ("source_vocab_size",)))
    if spec.norm.bias and spec.norm.kind != "layernorm":
        out.append(E("bias: true needs norm.kind layernorm (got rmsnorm)", ("norm", "bias")))
    if spec.norm.residual_alpha != 1.0 and spec.norm.placement != "post":
        out.append(E(f"residual_alpha {spec.norm.residual_alpha} needs norm.placement post "
                     f"(got {spec.norm.placement})", ("norm", "residual_alpha")))
    if spec.ffn.activation == "clamped_swiglu" and spec.ffn.clamp_limit is None:
        out.append(E("ffn.activation clamped_swiglu needs ffn.clamp_limit", ("ffn", "clamp_limit")))

    # -- attention
    att = spec.attention
    if isinstance(att, GQASpec):
        kv = att.num_kv_heads if att.num_kv_heads is not None else att.num_heads
        if att.kind == "mha" and kv != att.num_heads:
            out.append(E(f"attention.kind mha needs num_kv_heads == num_heads ({att.num_heads}), got {kv}; "
                         "use kind gqa", ("attention", "num_kv_heads")))
        elif kv > att.num_heads:
            out.append(E(f"{kv} exceeds attention.num_heads ({att.num_heads})", ("attention", "num_kv_heads")))
        elif att.num_heads % kv:
            out.append(E(f"attention.num_heads ({att.num_heads}) is not divisible by attention.num_kv_heads ({kv})",
                         ("attention", "num_kv_heads")))
        if att.head_dim is None and spec.model_dim % att.num_heads:
            out.append(E(f"model_dim ({spec.model_dim}) is not divisible by attention.num_heads ({att.num_heads}); "
                         "set attention.head_dim", ("attention", "head_dim")))
        for key in ("sliding_window", "chunked"):
            win = getattr(att, key)
            if win is not None:
                _selector_errors(win.layers, ("attention", key, "layers"), spec, out)
    pos = spec.position
    if pos.kind == "t5_relative":
        # T5 halves the buckets for bidirectional (encoder) attention, then uses half of those for exact
        # distances and divides by that count: log(d / max_exact) / log(max_distance / max_exact).
        need = 4 if spec.is_encoder_decoder else 2
        if pos.num_buckets < need:
            out.append(E(f"{pos.num_buckets} buckets: T5's relative bias needs at least {need} "
                         f"({'half for each direction, ' if need == 4 else ''}half of them exact distances)",
                         ("position", "num_buckets")))
        elif pos.max_distance <= pos.num_buckets // 2:
            out.append(E(f"{pos.max_distance} must exceed the exact-distance buckets (position.num_buckets // 2 = "
                         f"{pos.num_buckets // 2})", ("position", "max_distance")))
    if isinstance(att, MLASpec) and not isinstance(spec.position, RopeSpec):
        out.append(E(f"MLA's decoupled rope key needs position.kind rope (got {spec.position.kind})",
                     ("position", "kind")))
    if isinstance(spec.position, RopeSpec):
        pos = spec.position
        if isinstance(att, MLASpec):
            head = att.qk_rope_head_dim
            head_name = f"attention.qk_rope_head_dim ({head})"
        elif att.head_dim is not None:
            head = att.head_dim
            head_name = f"attention.head_dim ({head})"
        else:
            head = spec.model_dim // att.num_heads
            head_name = f"head width (model_dim {spec.model_dim} / attention.num_heads {att.num_heads} = {head})"
        if pos.rotary_dim is not None:
            if pos.rotary_dim % 2:
                out.append(E(f"{pos.rotary_dim} must be even", ("position", "rotary_dim")))
            if pos.rotary_dim > head:
                out.append(E(f"{pos.rotary_dim} exceeds the {head_name}", ("position", "rotary_dim")))
        elif head % 2:
            out.append(E(f"rope needs an even {head_name}", ("position",)))
        if pos.nope_layers is not None:
            _selector_errors(pos.nope_layers, ("position", "nope_layers"), spec, out)
    if spec.hybrid_attention is not None:
        if spec.is_encoder_decoder:
            out.append(E("hybrid (linear) attention is only defined for decoder_only models", ("hybrid_attention",)))
        _selector_errors(spec.hybrid_attention.softmax_layers, ("hybrid_attention", "softmax_layers"), spec, out)

    # -- MoE
    moe = spec.moe
    if moe is not None:
        ex = moe.experts
        _selector_errors(moe.layers, ("moe", "layers"), spec, out)
        sel = moe.layers
        selector_ok = not any(d.path[:2] == ("moe", "layers") for d in out)
        if selector_ok and sel.pattern is None and not sel.invert and sel.start >= spec.num_layers:
            out.append(E(f"dense-layer prefix of {sel.start} layers is not shorter than the model "
                         f"(num_layers {spec.num_layers})", ("moe", "layers", "start")))
        elif selector_ok and not any(sel.selects(i) for _, n in spec.stacks() for i in range(n)):
            out.append(E("selects no layer: a moe block needs at least one MoE layer", ("moe", "layers")))
        if ex.num_shared == 0 and ex.shared_hidden_dim is not None:
            out.append(E(f"shared_hidden_dim {ex.shared_hidden_dim} given but moe.experts.num_shared is 0",
                         ("moe", "experts", "shared_hidden_dim")))
        if ex.num_shared == 0 and ex.shared_gate:
            out.append(E("shared_gate needs moe.experts.num_shared >= 1 (got 0)", ("moe", "experts", "shared_gate")))
        r = moe.router
        if isinstance(r, TokenChoiceRouter):
            if r.top_k > ex.num_routed:
                out.append(E(f"{r.top_k} exceeds moe.experts.num_routed ({ex.num_routed})", ("moe", "router", "top_k")))
            g = r.groups
            if g is not None and r.top_k <= ex.num_routed:
                if ex.num_routed % g.num_groups:
                    out.append(E(f"{g.num_groups} groups do not divide moe.experts.num_routed ({ex.num_routed})",
                                 ("moe", "router", "groups", "num_groups")))
                elif g.top_groups > g.num_groups:
                    out.append(E(f"{g.top_groups} exceeds moe.router.groups.num_groups ({g.num_groups})",
                                 ("moe", "router", "groups", "top_groups")))
                else:
                    per_group = ex.num_routed // g.num_groups
                    reachable = g.top_groups * per_group
                    if reachable < r.top_k:
                        out.append(E(f"{g.top_groups} groups x {per_group} experts per group (moe.experts.num_routed "
                                     f"{ex.num_routed} / moe.router.groups.num_groups {g.num_groups}) = {reachable} "
                                     f"experts, fewer than moe.router.top_k ({r.top_k})",
                                     ("moe", "router", "groups", "top_groups")))
                if g.group_score == "top2_sum" and ex.num_routed // max(g.num_groups, 1) < 2:
                    out.append(E("group_score top2_sum needs at least 2 experts per group "
                                 f"(num_routed {ex.num_routed} / num_groups {g.num_groups})",
                                 ("moe", "router", "groups", "group_score")))
            if r.second_expert_sampled and r.top_k != 2:
                out.append(E(f"second_expert_sampled needs moe.router.top_k 2 (got {r.top_k})",
                             ("moe", "router", "second_expert_sampled")))
        b = moe.balance
        for key in ("device_balance", "comm_balance"):
            spec_b = getattr(b, key)
            if spec_b is not None and ex.num_routed % spec_b.num_devices:
                out.append(E(f"{spec_b.num_devices} devices do not divide moe.experts.num_routed ({ex.num_routed})",
                             ("moe", "balance", key, "num_devices")))
        if b.comm_balance is not None and b.comm_balance.top_devices > b.comm_balance.num_devices:
            out.append(E(f"{b.comm_balance.top_devices} exceeds moe.balance.comm_balance.num_devices "
                         f"({b.comm_balance.num_devices})", ("moe", "balance", "comm_balance", "top_devices")))

    # -- MTP
    if spec.mtp is not None:
        if spec.mtp.loss_weight is None:
            out.append(E(f"mtp.depth {spec.mtp.depth} needs mtp.loss_weight (lambda)", ("mtp", "loss_weight")))
        if spec.is_encoder_decoder:
            out.append(E("multi-token prediction is only defined for decoder_only models", ("mtp",)))
        if spec.mtp.moe_layer and spec.moe is None:
            out.append(E("mtp.moe_layer true needs a moe block", ("mtp", "moe_layer")))
    return out


def warnings(spec: "ModelSpec") -> list[Diagnostic]:
    from moezoo.spec.schema import ExpertChoiceRouter, GQASpec, HashRouter, TokenChoiceRouter

    out: list[Diagnostic] = []

    def W(msg: str, path: tuple) -> None:  # noqa: N802
        out.append(Diagnostic(msg, path, severity="warning"))

    if spec.ffn.clamp_limit is not None and spec.ffn.activation != "clamped_swiglu":
        W(f"has no effect with ffn.activation {spec.ffn.activation}", ("ffn", "clamp_limit"))
    att = spec.attention
    if isinstance(att, GQASpec) and att.temperature_tuning is not None:
        pos = spec.position
        if getattr(pos, "nope_layers", None) is None:
            W("applies to NoPE layers only, and position.nope_layers is not set", ("attention", "temperature_tuning"))
    moe = spec.moe
    if moe is None:
        return out
    r, b = moe.router, moe.balance
    losses = {
        "aux_loss_weight": b.aux_loss_weight,
        "sequence_aux_loss_weight": b.sequence_aux_loss_weight,
        "z_loss_weight": b.z_loss_weight,
    }
    if isinstance(r, HashRouter):
        for key, value in losses.items():
            if value:
                W(f"{value} has no effect with moe.router.kind hash (nothing is learned by the router)",
                  ("moe", "balance", key))
        for key in ("aux_free", "device_balance", "comm_balance"):
            if getattr(b, key) is not None:
                W("has no effect with moe.router.kind hash (nothing is learned by the router)", ("moe", "balance", key))
    if isinstance(r, ExpertChoiceRouter):
        if b.aux_free is not None:
            W("has no effect with moe.router.kind expert_choice: a per-expert bias shifts every score of that "
              "expert equally, so the tokens it picks do not change", ("moe", "balance", "aux_free"))
        for key in ("aux_loss_weight", "sequence_aux_loss_weight"):
            if losses[key]:
                W(f"{losses[key]} has no effect on balance with moe.router.kind expert_choice: every expert "
                  "takes exactly its capacity", ("moe", "balance", key))
    if isinstance(r, TokenChoiceRouter):
        if r.scoring == "sigmoid" and r.softmax_after_topk:
            W("has no effect with moe.router.scoring sigmoid (sigmoid is element-wise)",
              ("moe", "router", "softmax_after_topk"))
        if b.device_balance is not None and b.device_balance.num_devices == 1:
            W("num_devices 1 makes the device-level loss a constant", ("moe", "balance", "device_balance"))
    return out


def raise_for_errors(spec: "ModelSpec") -> None:
    found = errors(spec)
    if found:
        raise SpecCheckFailed(found)
