"""Plan a training run: per-GPU memory and per-step communication of a spec under a parallel layout.

The layout is Megatron-style: GPUs = TP x CP x PP x DP. Tensor parallelism (TP, with sequence parallelism)
splits matmul weights and activations; context parallelism (CP) splits the sequence; pipeline parallelism
(PP) splits the layers into stages run with the 1F1B schedule; expert parallelism (EP) splits the routed
experts of every MoE layer over EP ranks taken from the DP x CP ranks (experts are also split by TP, as
Megatron-Core does when the expert tensor-parallel size is left at TP); ZeRO shards optimizer state (1),
gradients (2) and weights (3) over the data-parallel ranks holding the same tensors (DP x CP for dense
tensors, DP x CP / EP for experts).

Figures and the sources they are checked against (tests/test_plan.py):
- weights + gradients + optimizer: Megatron-LM `compute_weight_and_optimizer_memory`
  (megatron/training/theoretical_memory_usage.py, NVIDIA/Megatron-LM commit 00caa53a): 18 bytes per
  parameter (bf16 weight 2, fp32 gradient 4, fp32 master weight 4, Adam moments 8), 6 + 12 / DP with the
  distributed optimizer (ZeRO-1);
- activations per layer: Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models", Table 2): 34sbh + 5as^2b without recomputation, 34sbh with selective recomputation (dropout on,
  MHA, FFN 4h, non-gated), divided by t with tensor + sequence parallelism; 2sbh per layer with full
  recomputation (only the layer input is kept);
- all-to-all per MoE layer and direction: tokens x copies x d_model x bytes x (1 - 1/EP), copies = top_k
  (one copy per routed expert), or the expected number of destination devices when a token is sent once per
  device; device-limited routing (DeepSeek-V2, M devices) caps that at M.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from moezoo.graph import EMBEDDING, ROUTER, lower
from moezoo.spec.schema import ExpertChoiceRouter, GQASpec, MLASpec, ModelSpec, TokenChoiceRouter

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
RECOMPUTE = ("none", "selective", "full")

# Memory of one GPU in bytes, as the vendor's datasheet states it (decimal GB). What the driver reports as
# usable differs a little from the datasheet figure and is not measured here.
GPUS: dict[str, tuple[int, str]] = {
    "a100-40gb": (40 * 10**9, "NVIDIA A100 datasheet: 40GB HBM2"),
    "a100-80gb": (80 * 10**9, "NVIDIA A100 datasheet: 80GB HBM2e"),
    "h100": (80 * 10**9, "NVIDIA H100 datasheet: H100 SXM / PCIe 80GB"),
    "h800": (80 * 10**9, "NVIDIA H800 datasheet: 80GB HBM3 (the GPU of DeepSeek-V3's cluster)"),
    "h200": (141 * 10**9, "NVIDIA H200 datasheet: 141GB HBM3e"),
    "b200": (180 * 10**9, "NVIDIA DGX B200 datasheet: 1,440GB over 8 GPUs"),
    "mi300x": (192 * 10**9, "AMD Instinct MI300X datasheet: 192GB HBM3"),
    "l40s": (48 * 10**9, "NVIDIA L40S datasheet: 48GB GDDR6"),
}


class PlanError(ValueError):
    """An invalid layout; the message is one line naming the option."""


@dataclass(frozen=True)
class Layout:
    gpus: int
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    dp: int = 1
    micro_batch: int = 1
    global_batch: int = 1
    seq_len: int = 4096
    recompute: str = "none"
    zero: int = 1
    dtype: str = "bf16"
    grad_dtype: str = "fp32"
    gpu: str = "h100"
    stage_layers: tuple[int, ...] = ()
    dispatch: str = "expert"  # "expert": one copy per routed expert; "device": one copy per destination device
    dropout: bool = False

    @property
    def micro_batches(self) -> int:
        """Micro-batches each pipeline runs per step."""
        return self.global_batch // (self.micro_batch * self.dp)


def _balanced_split(layers: int, pp: int) -> list[int]:
    """A split of `layers` into `pp` stages of at most ceil(layers / pp), the first and last stages (which
    also hold the embedding, head and MTP) taking the shortfall."""
    base = -(-layers // pp)
    split = [base] * pp
    short = base * pp - layers
    ends = [pp - 1, 0] if pp > 1 else [0]
    i = 0
    while short > 0:
        movable = [j for j in ends if split[j] > 1] or [j for j in range(pp) if split[j] > 1]
        j = movable[i % len(movable)]
        split[j] -= 1
        short -= 1
        i += 1
    return split


def make_layout(spec: ModelSpec, *, gpus: int | None = None, tp: int = 1, pp: int = 1, cp: int = 1, ep: int = 1,
                dp: int | None = None, micro_batch: int = 1, global_batch: int | None = None, seq_len: int = 4096,
                recompute: str = "none", zero: int = 1, dtype: str = "bf16", grad_dtype: str = "fp32",
                gpu: str = "h100", pp_layers: str | tuple[int, ...] | None = None, dispatch: str = "expert",
                dropout: bool = False) -> Layout:
    """Check a layout against the spec and derive what it leaves implicit (DP from the GPU count, the
    stage split). Raises PlanError with a one-line message."""
    for name, v in (("--tp", tp), ("--pp", pp), ("--cp", cp), ("--ep", ep), ("--micro-batch", micro_batch),
                    ("--seq-len", seq_len)):
        if v < 1:
            raise PlanError(f"{name} must be at least 1 (got {v})")
    if recompute not in RECOMPUTE:
        raise PlanError(f"--recompute must be one of {', '.join(RECOMPUTE)} (got {recompute})")
    if zero not in (0, 1, 2, 3):
        raise PlanError(f"--zero must be 0, 1, 2 or 3 (got {zero})")
    if dtype not in DTYPE_BYTES or grad_dtype not in DTYPE_BYTES:
        raise PlanError(f"--dtype / --grad-dtype must be one of {', '.join(DTYPE_BYTES)}")
    if gpu not in GPUS:
        raise PlanError(f"unknown --gpu {gpu!r} (known: {', '.join(GPUS)})")
    if dispatch not in ("expert", "device"):
        raise PlanError(f"--dispatch must be expert or device (got {dispatch})")
    if spec.is_encoder_decoder:
        raise PlanError(f"{spec.name}: plan covers decoder-only models; encoder-decoders are not modelled")
    model_parallel = tp * cp * pp
    if gpus is None and dp is None:
        dp = 1
    if gpus is None:
        gpus = model_parallel * dp
    if gpus % model_parallel:
        raise PlanError(f"--gpus {gpus} is not a multiple of tp x cp x pp = {tp} x {cp} x {pp} = {model_parallel}")
    if dp is not None and dp * model_parallel != gpus:
        raise PlanError(f"--dp {dp} disagrees with --gpus {gpus}: tp x cp x pp x dp = {model_parallel * dp}")
    dp = gpus // model_parallel
    att = spec.attention
    heads = att.num_heads
    if heads % tp:
        raise PlanError(f"--tp {tp} does not divide the {heads} attention heads")
    if isinstance(att, GQASpec) and (att.num_kv_heads or heads) % tp:
        raise PlanError(f"--tp {tp} does not divide the {att.num_kv_heads} KV heads")
    widths = [("dense FFN width", spec.ffn.hidden_dim)]
    if spec.moe is not None:
        widths.append(("expert width", spec.moe.experts.hidden_dim))
    for what, width in widths:
        if width % tp:
            raise PlanError(f"--tp {tp} does not divide the {what} {width}")
    if seq_len % cp:
        raise PlanError(f"--cp {cp} does not divide --seq-len {seq_len}")
    moe = spec.moe
    if moe is None and ep > 1:
        raise PlanError(f"--ep {ep}: {spec.name} has no MoE layers")
    if moe is not None:
        E = moe.experts.num_routed
        if E % ep:
            raise PlanError(f"--ep {ep} does not divide the {E} routed experts")
        if (dp * cp) % ep:
            raise PlanError(f"--ep {ep} does not divide dp x cp = {dp} x {cp} = {dp * cp} "
                            "(expert-parallel ranks are taken from the data-parallel ranks)")
    L = spec.num_layers
    if pp > L:
        raise PlanError(f"--pp {pp} leaves a stage empty: {spec.name} has {L} layers")
    if pp_layers is not None:
        try:
            split = tuple(int(x) for x in pp_layers.split(",")) if isinstance(pp_layers, str) else tuple(pp_layers)
        except ValueError:
            raise PlanError(f"--pp-layers {pp_layers!r}: give comma-separated layer counts, one per stage") from None
        if len(split) != pp:
            raise PlanError(f"--pp-layers gives {len(split)} stages, --pp is {pp}")
        if any(n < 1 for n in split):
            raise PlanError(f"--pp-layers {','.join(map(str, split))} leaves a stage empty")
        if sum(split) != L:
            raise PlanError(f"--pp-layers sums to {sum(split)}, {spec.name} has {L} layers")
    else:
        if L % pp:
            hint = ",".join(map(str, _balanced_split(L, pp)))
            raise PlanError(f"--pp {pp} does not divide the {L} layers; give the layers of each stage, "
                            f"e.g. --pp-layers {hint}")
        split = (L // pp,) * pp
    if global_batch is None:
        global_batch = micro_batch * dp * (4 * pp if pp > 1 else 1)
    if global_batch % (micro_batch * dp):
        raise PlanError(f"--global-batch {global_batch} is not a multiple of micro-batch x dp = "
                        f"{micro_batch} x {dp} = {micro_batch * dp}")
    return Layout(gpus=gpus, tp=tp, pp=pp, cp=cp, ep=ep, dp=dp, micro_batch=micro_batch, global_batch=global_batch,
                  seq_len=seq_len, recompute=recompute, zero=zero, dtype=dtype, grad_dtype=grad_dtype, gpu=gpu,
                  stage_layers=split, dispatch=dispatch, dropout=dropout)


# --------------------------------------------------------------------------- parameters per stage


@dataclass
class StageParams:
    dense: float = 0.0  # parameters this GPU holds that every data-parallel rank holds (after TP)
    expert: float = 0.0  # routed-expert parameters this GPU holds (after EP and TP)
    tensors: dict[str, float] = field(default_factory=dict)


def _tp_split(name: str, shape: tuple[int, ...], component: str) -> bool:
    """Whether tensor parallelism splits this tensor: matmul weights and the vocabulary-parallel embedding /
    head are split; vectors (norms, biases), the router and MLA's down-projections (duplicated in
    Megatron-Core's MLA) are replicated."""
    if len(shape) == 1 or component == ROUTER or shape[0] == 1:
        return False
    return not name.endswith(("wq_a.weight", "wkv_a.weight"))


def stage_params(spec: ModelSpec, layout: Layout) -> list[StageParams]:
    """Parameters held by one GPU of each pipeline stage."""
    graph = lower(spec)
    pp = layout.pp
    stage_of = []
    for s, n in enumerate(layout.stage_layers):
        stage_of += [s] * n
    out = [StageParams() for _ in range(pp)]
    for _, data in graph.g.nodes(data=True):
        if data["type"] != "param":
            continue
        p = data["param"]
        if data["mtp"]:
            stages = [pp - 1]
        elif p.layer is not None and p.stack == "decoder":
            stages = [stage_of[p.layer]]
        elif p.component == EMBEDDING:
            # a tied embedding is also the head: the last stage keeps a copy (Megatron's shared word embeddings)
            stages = [0, pp - 1] if spec.embedding.tied and pp > 1 else [0]
        else:  # final norm, LM head
            stages = [pp - 1]
        n = p.numel
        if p.expert_axis:
            held = n / layout.ep / layout.tp
        else:
            held = n / layout.tp if _tp_split(p.name, p.shape, p.component) else n
        for s in stages:
            if p.expert_axis:
                out[s].expert += held
            else:
                out[s].dense += held
            key = "mtp" if data["mtp"] else p.component
            out[s].tensors[key] = out[s].tensors.get(key, 0.0) + held
    return out


def state_bytes(params: StageParams, layout: Layout) -> dict[str, float]:
    """Weights, gradients and optimizer state of one GPU, ZeRO-sharded over the data-parallel ranks holding
    the same tensors (DP x CP for dense tensors, DP x CP / EP for experts)."""
    w_b, g_b = DTYPE_BYTES[layout.dtype], DTYPE_BYTES[layout.grad_dtype]
    o_b = 8 if layout.dtype == "fp32" else 12  # fp32 master copy (unless the weights are fp32) + Adam m, v
    dense_ranks = layout.dp * layout.cp
    expert_ranks = dense_ranks // layout.ep
    z = layout.zero

    def part(n: float, ranks: int) -> tuple[float, float, float]:
        return (n * w_b / (ranks if z >= 3 else 1), n * g_b / (ranks if z >= 2 else 1),
                n * o_b / (ranks if z >= 1 else 1))

    wd, gd, od = part(params.dense, dense_ranks)
    we, ge, oe = part(params.expert, expert_ranks)
    return {"weights": wd + we, "gradients": gd + ge, "optimizer": od + oe}


# --------------------------------------------------------------------------- activations


def _attention_elems(spec: ModelSpec, layer: int) -> tuple[float, int]:
    """(elements per token an attention layer stores for backward, heads), excluding the norm input."""
    h = spec.model_dim
    hybrid = spec.hybrid_attention
    if hybrid is not None and not hybrid.softmax_layers.selects(layer):
        H, d = hybrid.num_heads, hybrid.head_dim
        return h + 3 * H * d + 3 * H * d, H  # input, q/k/v, gate output, out-norm input, out-proj input
    att = spec.attention
    if isinstance(att, MLASpec):
        H, dqk, dv = att.num_heads, att.qk_nope_head_dim + att.qk_rope_head_dim, att.v_head_dim
        q = 2 * att.q_lora_rank if att.q_lora_rank else 0  # q_norm input, wq_b input
        kv = (att.kv_lora_rank + att.qk_rope_head_dim) + att.kv_lora_rank  # wkv_a output, wkv_b input
        return h + q + kv + H * dqk * 2 + H * dv * 2, H  # input; Q, K; V, out-proj input
    H = att.num_heads
    KV = att.num_kv_heads or H
    d = att.head_dim or h // H
    return h + H * d + 2 * KV * d + H * d, H  # input; Q; K, V; out-proj input


def layer_activations(spec: ModelSpec, layer: int, layout: Layout, *, recompute: str | None = None,
                      moe_layer: bool | None = None) -> dict[str, float]:
    """Bytes one layer stores for its backward pass, per micro-batch, on one GPU, by component."""
    recompute = recompute or layout.recompute
    a = DTYPE_BYTES[layout.dtype]
    s = layout.seq_len / layout.cp  # tokens of the sequence this GPU holds
    b = layout.micro_batch
    t = layout.tp  # with sequence parallelism everything below is split over the TP ranks
    h = spec.model_dim
    tokens = s * b / t
    if recompute == "full":
        return {"layer_input": a * h * tokens}
    out: dict[str, float] = {"norm_inputs": 2 * a * h * tokens}
    att_elems, heads = _attention_elems(spec, layer)
    out["attention"] = a * att_elems * tokens
    dropout_mask = 1.0 if layout.dropout else 0.0  # one byte per element
    if layout.dropout:
        out["dropout_masks"] = 2 * dropout_mask * h * tokens  # after attention and after the FFN
    if recompute == "none":
        hybrid = spec.hybrid_attention
        linear = hybrid is not None and not hybrid.softmax_layers.selects(layer)
        if not linear:
            # softmax output a x s_q x s_k (+ dropout mask and dropout output): Korthikanti's 5as^2b
            per_score = a + (1 + a if layout.dropout else 0)
            out["attention_scores"] = per_score * heads / t * b * s * layout.seq_len
    g = spec.ffn.num_matrices
    moe = spec.moe
    is_moe = spec.is_moe_layer(layer) if moe_layer is None else moe_layer
    if is_moe and moe is not None:
        ex, r = moe.experts, moe.router
        if isinstance(r, TokenChoiceRouter):
            copies = r.top_k * (max(1.0, r.capacity.train_factor) if r.capacity is not None else 1.0)
        elif isinstance(r, ExpertChoiceRouter):
            copies = min(r.capacity_factor, ex.num_routed)
        else:
            copies = 1
        out["router"] = (a * h + 4 * ex.num_routed) * tokens  # input, fp32 scores
        # per routed copy: dispatched input, gate/up outputs, down input, expert output (combine input)
        out["routed_experts"] = a * copies * (2 * h + g * ex.hidden_dim) * tokens
        if ex.num_shared:
            out["shared_experts"] = a * g * ex.num_shared * (ex.shared_hidden_dim or ex.hidden_dim) * tokens
        if moe.extra_dense_ffn:
            out["dense_ffn"] = a * (2 * h + g * spec.ffn.hidden_dim) * tokens
    else:
        out["dense_ffn"] = a * (h + g * spec.ffn.hidden_dim) * tokens  # input, pre-activations, down input
    return out


def _stage_activations(spec: ModelSpec, layout: Layout, stage: int) -> tuple[dict[str, float], float, float]:
    """(per micro-batch by component, recompute working set, last-stage extras held for one micro-batch)."""
    start = sum(layout.stage_layers[:stage])
    layers = range(start, start + layout.stage_layers[stage])
    per_mb: dict[str, float] = {}
    work = 0.0
    for i in layers:
        for k, v in layer_activations(spec, i, layout).items():
            per_mb[k] = per_mb.get(k, 0.0) + v
        if layout.recompute == "full":  # backward re-runs one layer's forward at a time
            work = max(work, sum(layer_activations(spec, i, layout, recompute="selective").values()))
    extra = 0.0
    if stage == layout.pp - 1:
        a = DTYPE_BYTES[layout.dtype]
        tokens = layout.seq_len / layout.cp * layout.micro_batch
        h, V, t = spec.model_dim, spec.vocab_size, layout.tp
        head = (2 * a * h / t + 4 * V / t) * tokens  # final-norm and head inputs, fp32 logits for the loss
        extra = head
        if spec.mtp is not None:
            mtp_layer = layer_activations(spec, spec.num_layers - 1, layout, recompute="none" if layout.recompute
                                          == "none" else "selective", moe_layer=spec.mtp.moe_layer)
            per_module = sum(mtp_layer.values()) + (4 * a * h / t) * tokens + head  # 2 norms + eh_proj input
            extra += spec.mtp.depth * per_module
    return per_mb, work, extra


# --------------------------------------------------------------------------- communication


def copies_per_token(spec: ModelSpec, layout: Layout) -> dict[str, Any]:
    """Copies of a token's hidden state the dispatch sends (before removing the local share).

    expert dispatch: one per routed expert (top_k). device dispatch: one per distinct destination device,
    the expectation under uniform routing: EP x (1 - C(E - E/EP, k) / C(E, k)); with device-limited routing
    whose groups are the EP devices (DeepSeek-V2: M of D devices) the expectation over the M chosen devices,
    M x (1 - C(n - n/M, k) / C(n, k)) with n = M x E / EP, never more than M; with groups spanning several
    devices, the cap M x devices-per-group."""
    moe = spec.moe
    assert moe is not None
    r, E, ep = moe.router, moe.experts.num_routed, layout.ep
    k = r.top_k if isinstance(r, TokenChoiceRouter) else (1 if not isinstance(r, ExpertChoiceRouter)
                                                         else r.capacity_factor)
    out: dict[str, Any] = {"top_k": k, "dispatch": layout.dispatch}
    if layout.dispatch == "expert" or not isinstance(r, TokenChoiceRouter):
        out["copies"] = float(k)
        return out
    per_dev = E // ep
    uniform = ep * (1 - math.comb(E - per_dev, k) / math.comb(E, k))
    groups = r.groups
    if groups is None:
        out["copies"] = uniform
        return out
    G, M = groups.num_groups, groups.top_groups
    if G == ep:
        n = M * per_dev
        exact = M * (1 - math.comb(n - per_dev, k) / math.comb(n, k)) if n >= k else float(M)
        out.update(copies=exact, cap=M, cap_rule=f"device-limited: {M} of {G} groups, one group per device")
        return out
    cap = M * (ep // G) if ep % G == 0 else min(ep, M * -(-ep // G))
    out.update(copies=min(uniform, cap), cap=cap,
               cap_rule=f"group-limited: {M} of {G} groups over {ep} devices (bound: min(uniform, cap))")
    return out


def moe_layer_a2a_bytes(spec: ModelSpec, layout: Layout, tokens: float) -> float:
    """Bytes one GPU sends (= receives, under uniform routing) in one direction (dispatch or combine) of one
    MoE layer for `tokens` tokens: tokens x copies x d_model x bytes x (1 - 1/EP)."""
    c = copies_per_token(spec, layout)["copies"]
    return tokens * c * spec.model_dim * DTYPE_BYTES[layout.dtype] * (1 - 1 / layout.ep)


# --------------------------------------------------------------------------- the plan


def plan(spec: ModelSpec, layout: Layout) -> dict[str, Any]:
    """The full plan as a JSON-ready dict (bytes are exact floats; parameters rounded to integers)."""
    capacity, source = GPUS[layout.gpu]
    m = layout.micro_batches
    params = stage_params(spec, layout)
    stages = []
    for s in range(layout.pp):
        st = state_bytes(params[s], layout)
        per_mb, work, extra = _stage_activations(spec, layout, s)
        in_flight = min(layout.pp - s, m)  # 1F1B: stage s holds pp - s micro-batches at its peak
        stored = in_flight * sum(per_mb.values())
        act = stored + work + extra
        total = st["weights"] + st["gradients"] + st["optimizer"] + act
        stages.append({
            "stage": s,
            "layers": [sum(layout.stage_layers[:s]), sum(layout.stage_layers[:s + 1]) - 1],
            "params": {"dense": round(params[s].dense), "expert": round(params[s].expert),
                       "total": round(params[s].dense + params[s].expert)},
            "params_by_component": {k: round(v) for k, v in params[s].tensors.items()},
            **st,
            "activations": {"per_micro_batch": per_mb, "per_micro_batch_total": sum(per_mb.values()),
                            "in_flight_micro_batches": in_flight, "stored": stored,
                            "recompute_working_set": work, "loss_and_mtp": extra, "total": act},
            "total": total,
        })
    worst = max(stages, key=lambda x: x["total"])
    out: dict[str, Any] = {
        "name": spec.name,
        "layout": {**{k: v for k, v in asdict(layout).items() if k != "stage_layers"},
                   "stage_layers": list(layout.stage_layers), "micro_batches": m,
                   "expert_dp": layout.dp * layout.cp // layout.ep},
        "gpu": {"name": layout.gpu, "memory_bytes": capacity, "source": source},
        "per_gpu": {"stage": worst["stage"], "params": worst["params"], "weights": worst["weights"],
                    "gradients": worst["gradients"], "optimizer": worst["optimizer"],
                    "activations": worst["activations"], "total": worst["total"],
                    "fits": worst["total"] <= capacity, "headroom_bytes": capacity - worst["total"]},
        "stages": stages,
        "per_step": _per_step(spec, layout, params),
    }
    return out


def _per_step(spec: ModelSpec, layout: Layout, params: list[StageParams]) -> dict[str, Any]:
    m, pp = layout.micro_batches, layout.pp
    out: dict[str, Any] = {"pipeline": {"micro_batches": m, "bubble_fraction": (pp - 1) / (m + pp - 1),
                                        "bubble_over_ideal": (pp - 1) / m}}
    if spec.moe is not None:
        moe_per_stage = []
        for s in range(pp):
            start = sum(layout.stage_layers[:s])
            n = sum(spec.is_moe_layer(i) for i in range(start, start + layout.stage_layers[s]))
            if s == pp - 1 and spec.mtp is not None and spec.mtp.moe_layer:
                n += spec.mtp.depth
            moe_per_stage.append(n)
        stage = max(range(pp), key=lambda i: moe_per_stage[i])
        tokens = layout.micro_batch * layout.seq_len / layout.cp / layout.tp  # tokens one GPU routes per micro-batch
        one = moe_layer_a2a_bytes(spec, layout, tokens)
        n_layers = moe_per_stage[stage]
        per_pass = one * n_layers * m
        a2a = {"stage": stage, "moe_layers": n_layers, "tokens_per_micro_batch": tokens,
               **copies_per_token(spec, layout),
               "per_layer_per_direction": one,
               "dispatch_forward": per_pass, "combine_forward": per_pass,
               "dispatch_backward": per_pass, "combine_backward": per_pass,
               "recompute_forward": 2 * per_pass if layout.recompute == "full" else 0.0}
        a2a["sent"] = a2a["received"] = 4 * per_pass + a2a["recompute_forward"]
        out["all_to_all"] = a2a
    # data-parallel traffic per GPU (ring collectives: each rank sends (n-1)/n of the buffer per pass)
    per_stage = [_dp_traffic(layout, params[s]) for s in range(pp)]
    worst = max(range(pp), key=lambda i: per_stage[i][0])
    out["data_parallel"] = {"stage": worst, "sent": per_stage[worst][0], "received": per_stage[worst][0],
                            "groups": per_stage[worst][1]}
    return out


def _dp_traffic(layout: Layout, params: StageParams) -> tuple[float, list[dict[str, Any]]]:
    """Bytes one GPU sends per step in data-parallel collectives (ring: (n-1)/n of the buffer per pass)."""
    m = layout.micro_batches
    w_b, g_b = DTYPE_BYTES[layout.dtype], DTYPE_BYTES[layout.grad_dtype]
    total = 0.0
    groups = []
    for label, n, ranks in (("dense", params.dense, layout.dp * layout.cp),
                            ("expert", params.expert, layout.dp * layout.cp // layout.ep)):
        f = (ranks - 1) / ranks
        if layout.zero == 0:
            sent, how = 2 * f * n * g_b, "all-reduce of gradients"
        elif layout.zero in (1, 2):
            sent, how = f * n * (g_b + w_b), "reduce-scatter of gradients + all-gather of updated weights"
        else:
            sent, how = m * f * n * (2 * w_b + g_b), \
                "per micro-batch: all-gather of weights for forward and backward, reduce-scatter of gradients"
        total += sent
        groups.append({"tensors": label, "ranks": ranks, "bytes": sent, "collectives": how})
    return total, groups


def layout_grid(spec: ModelSpec, base: Layout) -> list[tuple[str, dict[str, Any]]]:
    """The base layout under every recompute choice and ZeRO stage 0, 1 and 3: (label, plan) pairs."""
    out = []
    for z in (0, 1, 3):
        for r in RECOMPUTE:
            lay = Layout(**{**asdict(base), "zero": z, "recompute": r, "stage_layers": base.stage_layers})
            out.append((f"ZeRO-{z}\n{r}", plan(spec, lay)))
    return out


# --------------------------------------------------------------------------- views


def _gib(x: float) -> str:
    return f"{x / 2**30:,.2f} GiB"


def terminal_plan(rep: dict[str, Any]):
    """Rich tables: layout, per-GPU memory of the fullest stage, every stage, per-step communication."""
    from rich.console import Group
    from rich.table import Table

    from moezoo.report import human

    lay, g, pg = rep["layout"], rep["gpu"], rep["per_gpu"]
    head = Table(title=f"{rep['name']}: layout", show_header=False)
    head.add_column(style="bold")
    head.add_column()
    head.add_row("GPUs", f"{lay['gpus']} = TP {lay['tp']} x CP {lay['cp']} x PP {lay['pp']} x DP {lay['dp']}"
                 f"  (EP {lay['ep']} inside DP x CP; expert DP {lay['expert_dp']})")
    head.add_row("batch", f"global {lay['global_batch']} sequences of {lay['seq_len']} tokens; micro-batch "
                 f"{lay['micro_batch']}; {lay['micro_batches']} micro-batches per pipeline per step")
    head.add_row("stages (layers)", ",".join(str(n) for n in lay["stage_layers"]))
    head.add_row("precision", f"weights {lay['dtype']}, gradients {lay['grad_dtype']}, Adam fp32"
                 f"{' (with fp32 master weights)' if lay['dtype'] != 'fp32' else ''}; ZeRO-{lay['zero']}; "
                 f"recompute {lay['recompute']}")
    mem = Table(title=f"per GPU (stage {pg['stage']}, the fullest)", header_style="bold")
    mem.add_column("part")
    mem.add_column("value", justify="right")
    p = pg["params"]
    mem.add_row("parameters held: dense", f"{p['dense']:,} ({human(p['dense'])})")
    mem.add_row("parameters held: experts", f"{p['expert']:,} ({human(p['expert'])})")
    mem.add_row("weights", _gib(pg["weights"]))
    mem.add_row("gradients", _gib(pg["gradients"]))
    mem.add_row("optimizer state", _gib(pg["optimizer"]))
    act = pg["activations"]
    for k, v in act["per_micro_batch"].items():
        mem.add_row(f"  activations / micro-batch: {k}", _gib(v))
    mem.add_row(f"activations x {act['in_flight_micro_batches']} in-flight micro-batches (1F1B)", _gib(act["stored"]))
    if act["recompute_working_set"]:
        mem.add_row("recompute working set (one layer)", _gib(act["recompute_working_set"]))
    if act["loss_and_mtp"]:
        mem.add_row("logits and loss (+ MTP modules), one micro-batch", _gib(act["loss_and_mtp"]))
    mem.add_row("total", _gib(pg["total"]), style="bold")
    verdict = "fits" if pg["fits"] else "DOES NOT FIT"
    mem.add_row(f"{g['name']} ({g['memory_bytes'] / 1e9:.0f} GB)", f"{verdict} (headroom {_gib(pg['headroom_bytes'])})",
                style="green" if pg["fits"] else "bold red")
    st = Table(title="stages", header_style="bold")
    for c in ("stage", "layers", "params", "weights+grads+optim", "activations", "in flight", "total"):
        st.add_column(c, justify="left" if c in ("stage", "layers") else "right")
    for s in rep["stages"]:
        st.add_row(str(s["stage"]), f"{s['layers'][0]}-{s['layers'][1]}", human(s["params"]["total"]),
                   _gib(s["weights"] + s["gradients"] + s["optimizer"]), _gib(s["activations"]["total"]),
                   str(s["activations"]["in_flight_micro_batches"]), _gib(s["total"]))
    step = rep["per_step"]
    com = Table(title="per step, per GPU", header_style="bold")
    com.add_column("traffic")
    com.add_column("value", justify="right")
    if "all_to_all" in step:
        a = step["all_to_all"]
        cap = f", cap {a['cap']}" if "cap" in a else ""
        com.add_row("all-to-all copies per token", f"{a['copies']:.3f} ({a['dispatch']} dispatch, top-k {a['top_k']}{cap})")
        com.add_row(f"all-to-all per MoE layer, per direction (stage {a['stage']}, {a['moe_layers']} MoE layers)",
                    _gib(a["per_layer_per_direction"]))
        for k in ("dispatch_forward", "combine_forward", "dispatch_backward", "combine_backward"):
            com.add_row(f"  {k.replace('_', ' ')}", _gib(a[k]))
        if a["recompute_forward"]:
            com.add_row("  recomputed forward (dispatch + combine)", _gib(a["recompute_forward"]))
        com.add_row("all-to-all sent (= received)", _gib(a["sent"]))
    d = step["data_parallel"]
    for grp in d["groups"]:
        com.add_row(f"data-parallel {grp['tensors']} (group of {grp['ranks']})", _gib(grp["bytes"]))
    com.add_row("data-parallel sent (= received)", _gib(d["sent"]))
    pipe = step["pipeline"]
    com.add_row("pipeline bubble", f"{100 * pipe['bubble_fraction']:.1f}% of the step "
                f"((pp-1)/(m+pp-1), m = {pipe['micro_batches']})")
    return Group(head, mem, st, com)


def plot_memory_grid(spec: ModelSpec, base: Layout, path) -> Any:
    """Stacked bars: per-GPU memory by part (fullest stage) for the base layout under ZeRO 0/1/3 x recompute."""
    from moezoo.report import _pyplot

    plt = _pyplot()
    grid = layout_grid(spec, base)
    parts = ("weights", "gradients", "optimizer", "activations")
    fig, ax = plt.subplots(figsize=(10, 5))
    bottoms = [0.0] * len(grid)
    for part in parts:
        vals = [(r["per_gpu"][part]["total"] if part == "activations" else r["per_gpu"][part]) / 2**30
                for _, r in grid]
        ax.bar(range(len(grid)), vals, bottom=bottoms, label=part)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    cap = GPUS[base.gpu][0] / 2**30
    ax.axhline(cap, color="black", linestyle="--", linewidth=1)
    ax.text(len(grid) - 0.5, cap, f" {base.gpu}", va="bottom", ha="right", fontsize=8)
    ax.set_xticks(range(len(grid)), [lbl for lbl, _ in grid], fontsize=8)
    ax.set_ylabel("GiB per GPU (fullest stage)")
    ax.set_title(f"{spec.name}: TP {base.tp} PP {base.pp} EP {base.ep} CP {base.cp} DP {base.dp}, "
                 f"micro-batch {base.micro_batch} x {base.seq_len} tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_seq_len(spec: ModelSpec, path, lengths: list[int] | None = None) -> Any:
    """KV cache per sequence and training FLOPs per token (default convention) against sequence length."""
    from moezoo.accounting import count_flops, count_params, kv_cache_bytes_per_sequence
    from moezoo.report import _pyplot

    plt = _pyplot()
    top = max(spec.max_seq_len, 4096)
    lengths = lengths or [2**i for i in range(8, 31) if 2**i <= top]
    graph = lower(spec)
    params = count_params(graph)
    kv = [kv_cache_bytes_per_sequence(spec, n) / 2**30 for n in lengths]
    fl = [count_flops(graph, n, params=params).train_per_token / 1e9 for n in lengths]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.loglog(lengths, kv, marker="o", base=2)
    a1.set_xlabel("sequence length")
    a1.set_ylabel("KV cache per sequence (GiB, bf16)")
    a2.semilogx(lengths, fl, marker="o", base=2)
    a2.set_xlabel("sequence length")
    a2.set_ylabel("training GFLOPs per token")
    fig.suptitle(f"{spec.name}: KV cache and training FLOPs against sequence length")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
