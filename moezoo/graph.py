"""Lowering: a validated ModelSpec -> a ModelGraph (a networkx DiGraph).

Nodes are modules (embedding, attention, router, experts, ...) and parameter tensors. A module points
at the tensors it uses with a "uses" edge that says how it uses them (a matmul per token, a lookup, an
element-wise scale), and at the next module with a "flow" edge. A tensor shared by two modules (tied
embedding and head, or DeepSeek-V3's MTP reusing the main embedding and head) is one node with two
"uses" edges, so counting tensors counts it once and counting uses charges every matmul.

Parameter names are the state-dict names of the generated `model.py`, so the generated model can be
checked tensor by tensor against this graph. Accounting and code generation both read this graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import networkx as nx

from moezoo.spec.schema import (
    ExpertChoiceRouter,
    GQASpec,
    HashRouter,
    MLASpec,
    ModelSpec,
    NoisyTopKSpec,
    RopeSpec,
    T5RelativeSpec,
    TokenChoiceRouter,
)

# Components of the parameter / FLOP breakdown.
EMBEDDING = "embedding"
LM_HEAD = "lm_head"
ATTENTION = "attention"
NORMS = "norms"
DENSE_FFN = "dense_ffn"
ROUTER = "router"
SHARED = "shared_experts"
ROUTED = "routed_experts"
POSITION = "position"
MTP = "mtp"
COMPONENTS = (EMBEDDING, ATTENTION, DENSE_FFN, ROUTER, SHARED, ROUTED, NORMS, POSITION, LM_HEAD)


@dataclass(frozen=True)
class Param:
    name: str
    shape: tuple[int, ...]
    component: str
    stack: str | None = None  # "encoder", "decoder", "mtp" or None for model-level tensors
    layer: int | None = None
    expert_axis: bool = False  # stacked routed experts: dim 0 indexes the expert

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class AttentionCore:
    """What a softmax (or linear) attention layer computes beyond its projections, per query token."""

    kind: str  # "causal", "bidirectional", "cross", "linear"
    num_heads: int
    qk_dim: int
    v_dim: int
    window: int | None = None  # sliding window or chunk length
    chunked: bool = False
    block_size: int | None = None  # linear attention only


def new_digraph() -> nx.DiGraph:
    """networkx is imported on first use: commands that never lower a spec (--help, validate, ls, schema,
    import-hf) start about 0.2 s sooner."""
    import networkx as nx

    return nx.DiGraph()


@dataclass
class ModelGraph:
    spec: ModelSpec
    g: nx.DiGraph = field(default_factory=new_digraph)

    # -- construction helpers
    def module(self, name: str, kind: str, *, stack: str | None = None, layer: int | None = None,
               mtp: bool = False, after: str | None = None, **attrs) -> str:
        node = f"mod:{name}"
        self.g.add_node(node, type="module", name=name, kind=kind, stack=stack, layer=layer, mtp=mtp, **attrs)
        if after is not None:
            self.g.add_edge(f"mod:{after}", node, type="flow")
        return name

    def param(self, module: str, p: Param, use: str = "matmul", fraction: float = 1.0, mtp: bool = False) -> None:
        """Declare tensor `p` (once) and record that `module` uses it.

        use: "matmul" (2 FLOPs per weight per token it touches), "lookup", or "elementwise".
        fraction: share of the tensor one token touches (k/E for stacked routed experts).
        """
        node = f"param:{p.name}"
        if node not in self.g:
            self.g.add_node(node, type="param", param=p, mtp=mtp)
        self.g.add_edge(f"mod:{module}", node, type="uses", use=use, fraction=fraction)

    def use(self, module: str, param_name: str, use: str = "matmul", fraction: float = 1.0) -> None:
        """Record another use of an existing tensor (tied / shared weights)."""
        self.g.add_edge(f"mod:{module}", f"param:{param_name}", type="uses", use=use, fraction=fraction)

    # -- queries
    def params(self, *, mtp: bool | None = False) -> Iterator[Param]:
        """Tensors, each once; mtp=False: the main model, True: the MTP modules only, None: both."""
        for _, data in self.g.nodes(data=True):
            if data["type"] == "param" and (mtp is None or data["mtp"] == mtp):
                yield data["param"]

    def uses(self, *, mtp: bool | None = False) -> Iterator[tuple[dict, Param, dict]]:
        """(module attrs, tensor, edge attrs) for every use of a tensor by a module."""
        for src, dst, edge in self.g.edges(data=True):
            if edge["type"] != "uses":
                continue
            mod = self.g.nodes[src]
            if mtp is None or mod["mtp"] == mtp:
                yield mod, self.g.nodes[dst]["param"], edge

    def modules(self, *, mtp: bool | None = False) -> Iterator[dict]:
        for _, data in self.g.nodes(data=True):
            if data["type"] == "module" and (mtp is None or data["mtp"] == mtp):
                yield data


# --------------------------------------------------------------------------- lowering


def _norm(graph: ModelGraph, name: str, dim: int, **where) -> None:
    spec = graph.spec
    mtp = where.pop("mtp", False)
    graph.module(name, "norm", mtp=mtp, **where)
    stack, layer = where.get("stack"), where.get("layer")
    graph.param(name, Param(f"{name}.weight", (dim,), NORMS, stack, layer), "elementwise", mtp=mtp)
    if spec.norm.bias:
        graph.param(name, Param(f"{name}.bias", (dim,), NORMS, stack, layer), "elementwise", mtp=mtp)


def _linear(graph: ModelGraph, module: str, name: str, out_dim: int, in_dim: int, component: str,
            *, bias: bool = False, stack=None, layer=None, mtp=False) -> None:
    graph.param(module, Param(f"{name}.weight", (out_dim, in_dim), component, stack, layer), mtp=mtp)
    if bias:
        graph.param(module, Param(f"{name}.bias", (out_dim,), component, stack, layer), "elementwise", mtp=mtp)


def _attention(graph: ModelGraph, prefix: str, *, stack: str, layer: int, mtp: bool, cross: bool = False,
               causal: bool = True) -> None:
    spec, att = graph.spec, graph.spec.attention
    D = spec.model_dim
    where = dict(stack=stack, layer=layer, mtp=mtp)
    hybrid = spec.hybrid_attention
    if not cross and hybrid is not None and not mtp and not hybrid.softmax_layers.selects(layer):
        H, hd = hybrid.num_heads, hybrid.head_dim
        core = AttentionCore("linear", H, hd, hd, block_size=hybrid.block_size)
        graph.module(prefix, "lightning_attention", core=core, **where)
        _linear(graph, prefix, f"{prefix}.wqkv", 3 * H * hd, D, ATTENTION, **where)
        _linear(graph, prefix, f"{prefix}.w_gate", H * hd, D, ATTENTION, **where)
        graph.param(prefix, Param(f"{prefix}.out_norm.weight", (H * hd,), ATTENTION, stack, layer), "elementwise", mtp=mtp)
        _linear(graph, prefix, f"{prefix}.wo", D, H * hd, ATTENTION, **where)
        return
    if isinstance(att, MLASpec):
        H, nope, rope, dv = att.num_heads, att.qk_nope_head_dim, att.qk_rope_head_dim, att.v_head_dim
        core = AttentionCore("causal", H, nope + rope, dv)
        graph.module(prefix, "mla", core=core, **where)
        if att.q_lora_rank:
            _linear(graph, prefix, f"{prefix}.wq_a", att.q_lora_rank, D, ATTENTION, **where)
            graph.param(prefix, Param(f"{prefix}.q_norm.weight", (att.q_lora_rank,), ATTENTION, stack, layer),
                        "elementwise", mtp=mtp)
            _linear(graph, prefix, f"{prefix}.wq_b", H * (nope + rope), att.q_lora_rank, ATTENTION, **where)
        else:
            _linear(graph, prefix, f"{prefix}.wq", H * (nope + rope), D, ATTENTION, **where)
        _linear(graph, prefix, f"{prefix}.wkv_a", att.kv_lora_rank + rope, D, ATTENTION, **where)
        graph.param(prefix, Param(f"{prefix}.kv_norm.weight", (att.kv_lora_rank,), ATTENTION, stack, layer),
                    "elementwise", mtp=mtp)
        _linear(graph, prefix, f"{prefix}.wkv_b", H * (nope + dv), att.kv_lora_rank, ATTENTION, **where)
        _linear(graph, prefix, f"{prefix}.wo", D, H * dv, ATTENTION, **where)
        return
    assert isinstance(att, GQASpec)
    H = att.num_heads
    KV = att.num_kv_heads or H
    hd = att.head_dim or D // H
    window, chunked = None, False
    if not cross and att.sliding_window is not None and att.sliding_window.layers.selects(layer):
        window = att.sliding_window.size
    if not cross and att.chunked is not None and att.chunked.layers.selects(layer):
        window, chunked = att.chunked.size, True
    kind = "cross" if cross else ("causal" if causal else "bidirectional")
    core = AttentionCore(kind, H, hd, hd, window=window, chunked=chunked)
    graph.module(prefix, "cross_attention" if cross else "attention", core=core, **where)
    _linear(graph, prefix, f"{prefix}.wq", H * hd, D, ATTENTION, bias=att.qkv_bias, **where)
    _linear(graph, prefix, f"{prefix}.wk", KV * hd, D, ATTENTION, bias=att.qkv_bias, **where)
    _linear(graph, prefix, f"{prefix}.wv", KV * hd, D, ATTENTION, bias=att.qkv_bias, **where)
    _linear(graph, prefix, f"{prefix}.wo", D, H * hd, ATTENTION, bias=att.out_bias, **where)
    if att.qk_norm in ("per_head", "full"):
        q_dim, k_dim = (hd, hd) if att.qk_norm == "per_head" else (H * hd, KV * hd)
        graph.param(prefix, Param(f"{prefix}.q_norm.weight", (q_dim,), ATTENTION, stack, layer), "elementwise", mtp=mtp)
        graph.param(prefix, Param(f"{prefix}.k_norm.weight", (k_dim,), ATTENTION, stack, layer), "elementwise", mtp=mtp)
    if att.sinks:
        graph.param(prefix, Param(f"{prefix}.sinks", (H,), ATTENTION, stack, layer), "elementwise", mtp=mtp)


def _ffn(graph: ModelGraph, prefix: str, hidden: int, component: str, *, stack, layer, mtp,
         kind: str = "ffn", fraction: float = 1.0) -> None:
    spec = graph.spec
    D = spec.model_dim
    graph.module(prefix, kind, stack=stack, layer=layer, mtp=mtp, hidden_dim=hidden)
    gated = spec.ffn.num_matrices == 3
    names = (["w_gate"] if gated else []) + ["w_up"]
    for n in names:
        _linear(graph, prefix, f"{prefix}.{n}", hidden, D, component, bias=spec.ffn.bias, stack=stack, layer=layer, mtp=mtp)
    _linear(graph, prefix, f"{prefix}.w_down", D, hidden, component, bias=spec.ffn.bias, stack=stack, layer=layer, mtp=mtp)


def routed_fraction(spec: ModelSpec) -> float:
    """Share of the routed experts one token touches on average: k/E (expert choice: c/E; hash: 1/E)."""
    moe = spec.moe
    assert moe is not None
    E = moe.experts.num_routed
    r = moe.router
    if isinstance(r, TokenChoiceRouter):
        return r.top_k / E
    if isinstance(r, ExpertChoiceRouter):
        return min(r.capacity_factor, E) / E
    return 1 / E


def _moe(graph: ModelGraph, prefix: str, *, stack, layer, mtp) -> None:
    spec = graph.spec
    moe = spec.moe
    assert moe is not None
    D, E, F = spec.model_dim, moe.experts.num_routed, moe.experts.hidden_dim
    where = dict(stack=stack, layer=layer, mtp=mtp)
    r = moe.router
    graph.module(prefix, "moe", **where)
    if not isinstance(r, HashRouter):
        router = graph.module(f"{prefix}.router", "router", after=prefix, **where)
        _linear(graph, router, f"{prefix}.router", E, D, ROUTER, bias=getattr(r, "bias", False), **where)
        if isinstance(r, TokenChoiceRouter) and isinstance(r.noise, NoisyTopKSpec):
            _linear(graph, router, f"{prefix}.router.w_noise", E, D, ROUTER, **where)
    experts = graph.module(f"{prefix}.experts", "experts", after=prefix, num_experts=E, **where)
    frac = routed_fraction(spec)
    gated = spec.ffn.num_matrices == 3
    mats = [("w_gate", (E, F, D))] if gated else []
    mats += [("w_up", (E, F, D)), ("w_down", (E, D, F))]
    for n, shape in mats:
        graph.param(experts, Param(f"{prefix}.experts.{n}", shape, ROUTED, stack, layer, True), fraction=frac, mtp=mtp)
        if moe.experts.bias:
            bshape = (E, shape[1])
            graph.param(experts, Param(f"{prefix}.experts.{n}_bias", bshape, ROUTED, stack, layer, True),
                        "elementwise", fraction=frac, mtp=mtp)
    ex = moe.experts
    if ex.num_shared:
        width = ex.num_shared * (ex.shared_hidden_dim or F)
        _ffn(graph, f"{prefix}.shared", width, SHARED, kind="shared_experts", **where)
        if ex.shared_gate:
            _linear(graph, f"{prefix}.shared", f"{prefix}.shared_gate", 1, D, SHARED, **where)


def _block(graph: ModelGraph, prefix: str, *, stack: str, layer: int, moe_layer: bool, mtp: bool = False,
           causal: bool = True, cross: bool = False) -> None:
    spec = graph.spec
    D = spec.model_dim
    where = dict(stack=stack, layer=layer, mtp=mtp)
    sandwich = spec.norm.placement == "sandwich"
    graph.module(prefix, "block", **where)
    _norm(graph, f"{prefix}.attn_norm", D, **where)
    _attention(graph, f"{prefix}.attn", causal=causal, **where)
    if sandwich:
        _norm(graph, f"{prefix}.attn_post_norm", D, **where)
    if cross:
        _norm(graph, f"{prefix}.cross_norm", D, **where)
        _attention(graph, f"{prefix}.cross_attn", cross=True, **where)
    _norm(graph, f"{prefix}.ffn_norm", D, **where)
    if moe_layer:
        _moe(graph, f"{prefix}.moe", **where)
        if spec.moe is not None and spec.moe.extra_dense_ffn:
            _norm(graph, f"{prefix}.extra_ffn_norm", D, **where)
            _ffn(graph, f"{prefix}.extra_ffn", spec.ffn.hidden_dim, DENSE_FFN, **where)
    else:
        _ffn(graph, f"{prefix}.ffn", spec.ffn.hidden_dim, DENSE_FFN, **where)
    if sandwich:
        _norm(graph, f"{prefix}.ffn_post_norm", D, **where)


def lower(spec: ModelSpec) -> ModelGraph:
    """Build the module/tensor graph of `spec` (no tensors are allocated)."""
    graph = ModelGraph(spec)
    D, V = spec.model_dim, spec.vocab_size
    graph.module("embed", "embedding")
    graph.param("embed", Param("embed.weight", (V, D), EMBEDDING), "lookup")
    if spec.is_encoder_decoder:
        if spec.source_vocab_size is not None:  # the encoder reads its own vocabulary (GShard)
            graph.module("encoder_embed", "embedding")
            graph.param("encoder_embed", Param("encoder_embed.weight", (spec.source_vocab_size, D), EMBEDDING), "lookup")
        for stack, n in spec.stacks():
            prefix = stack
            if isinstance(spec.position, T5RelativeSpec):
                graph.module(f"{prefix}.rel_bias", "relative_bias", stack=stack)
                graph.param(f"{prefix}.rel_bias", Param(f"{prefix}.rel_bias.weight",
                            (spec.position.num_buckets, spec.attention.num_heads), POSITION, stack), "lookup")
            for i in range(n):
                _block(graph, f"{prefix}.layers.{i}", stack=stack, layer=i, moe_layer=spec.is_moe_layer(i),
                       causal=stack == "decoder", cross=stack == "decoder")
            _norm(graph, f"{prefix}.norm", D, stack=stack)
    else:
        for i in range(spec.num_layers):
            _block(graph, f"layers.{i}", stack="decoder", layer=i, moe_layer=spec.is_moe_layer(i))
        _norm(graph, "norm", D)
    graph.module("head", "lm_head")
    if spec.embedding.tied:
        graph.use("head", "embed.weight")
    else:
        graph.param("head", Param("head.weight", (V, D), LM_HEAD))
    if spec.mtp is not None:
        for k in range(spec.mtp.depth):
            p = f"mtp.{k}"
            where = dict(stack="mtp", layer=k, mtp=True)
            graph.module(p, "mtp_module", **where)
            graph.use(p, "embed.weight", "lookup")  # shared with the main model
            _norm(graph, f"{p}.enorm", D, **where)
            _norm(graph, f"{p}.hnorm", D, **where)
            graph.module(f"{p}.eh_proj", "projection", **where)
            _linear(graph, f"{p}.eh_proj", f"{p}.eh_proj", D, 2 * D, MTP, stack="mtp", layer=k, mtp=True)
            _block(graph, f"{p}.block", moe_layer=spec.mtp.moe_layer, **where)
            _norm(graph, f"{p}.norm", D, **where)
            graph.module(f"{p}.head", "lm_head", **where)
            graph.use(f"{p}.head", "head.weight" if not spec.embedding.tied else "embed.weight")
    return graph


def rope_layers(spec: ModelSpec) -> list[int]:
    """Decoder layers that apply rotary embeddings."""
    pos = spec.position
    if not isinstance(pos, RopeSpec):
        return []
    return [i for i in range(spec.num_layers) if pos.nope_layers is None or not pos.nope_layers.selects(i)]
