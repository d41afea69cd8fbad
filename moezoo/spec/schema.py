"""The moezoo spec language: one frozen Pydantic model per component.

Every field carries a description: it is the single source of the JSON Schema (`moezoo schema`), of
CLI help and of the comments in generated code. Component kinds (attention, position encoding, router,
noise, rope scaling) are discriminated unions on a `kind` field. Cross-field rules live in
`moezoo.spec.checks` and run from `ModelSpec`'s validator, so a `ModelSpec` that exists is valid.

Units are in the names: `_dim` is a width in elements, `_rank` a low-rank width, `num_` a count.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# Upper bounds keep absurd numbers out (1e400, 2**200) with a clear message instead of an overflow later.
MAX_COUNT = 1 << 20  # experts, heads, layers, vocabulary entries per axis
MAX_DIM = 1 << 22  # any single width
MAX_SEQ = 1 << 34

IDENTIFIER = r"^[a-z][a-z0-9_]{0,63}$"

# Characters free text may not hold: they reach generated docstrings and reports, where a bidirectional control
# or a line separator would make the text read differently from what runs (the "Trojan Source" trick).
_HIDDEN = {0x061C: "ARABIC LETTER MARK", 0x200B: "ZERO WIDTH SPACE", 0x200E: "LEFT-TO-RIGHT MARK",
           0x200F: "RIGHT-TO-LEFT MARK", 0x2028: "LINE SEPARATOR", 0x2029: "PARAGRAPH SEPARATOR",
           0xFEFF: "ZERO WIDTH NO-BREAK SPACE", 0x0085: "NEXT LINE"}
_HIDDEN.update({c: "a bidirectional control" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def plain_text(value: str, *, newlines: bool = False) -> str:
    """Free text is printable: no control, bidirectional-control or line-separator characters, no lone surrogate."""
    for ch in value:
        c = ord(ch)
        if ch in "\n\t" and newlines:
            continue
        if c < 0x20 or 0x7F <= c <= 0x9F or c in _HIDDEN or 0xD800 <= c <= 0xDFFF:
            name = _HIDDEN.get(c, "a lone surrogate" if 0xD800 <= c <= 0xDFFF else "a control character")
            raise ValueError(f"text holds U+{c:04X} ({name}); write plain printable text")
    return value


PlainText = Annotated[str, AfterValidator(plain_text)]
PlainTextBlock = Annotated[str, AfterValidator(lambda v: plain_text(v, newlines=True))]


class Spec(BaseModel):
    """Base class: immutable, unknown keys rejected, defaults validated like user input."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, strict=True)


def Count(description: str, default=..., *, ge: int = 1, le: int = MAX_COUNT):  # noqa: N802
    return Field(default, description=description, ge=ge, le=le)


def Dim(description: str, default=..., *, ge: int = 1):  # noqa: N802
    return Field(default, description=description, ge=ge, le=MAX_DIM)


def Weight(description: str, default: float = 0.0):  # noqa: N802
    return Field(default, description=description, ge=0.0, le=1e6, allow_inf_nan=False)


# --------------------------------------------------------------------------- layer selection


class LayerSelector(Spec):
    """Which layers of a stack a feature applies to.

    Either a periodic rule (layer i is selected when i >= start and i % every == offset) or an
    explicit pattern string with one character per layer ('1'/'M'/'x' selected, '0'/'D'/'.' not).
    """

    every: int = Count("Period of the rule: select one layer in every `every` layers.", 1)
    offset: int = Count("Which layer in each period is selected (i % every == offset).", 0, ge=0)
    start: int = Count("Layers below this index are never selected (e.g. DeepSeek's dense prefix).", 0, ge=0)
    pattern: str | None = Field(
        None,
        description="Explicit per-layer pattern, one character per layer: 'M', '1' or 'x' selects the "
        "layer, 'D', '0' or '.' does not. Overrides every / offset / start.",
        max_length=MAX_COUNT,
        pattern=r"^[MDmd01x.]*$",
    )
    invert: bool = Field(False, description="Select exactly the layers the rule does not select.")

    def selects(self, index: int) -> bool:
        if self.pattern is not None:
            hit = self.pattern[index] in "Mm1x"
        else:
            hit = index >= self.start and index % self.every == self.offset
        return hit != self.invert

    def indices(self, num_layers: int) -> list[int]:
        return [i for i in range(num_layers) if self.selects(i)]


def ALL_LAYERS() -> LayerSelector:  # noqa: N802
    return LayerSelector()


# --------------------------------------------------------------------------- skeleton pieces


class NormSpec(Spec):
    """Normalisation layers of the blocks."""

    kind: Literal["rmsnorm", "layernorm"] = Field(
        "rmsnorm", description="RMSNorm (scale only; T5's norm is this) or LayerNorm (mean-centred)."
    )
    eps: float = Field(1e-6, description="Epsilon added to the variance.", gt=0.0, le=1.0)
    bias: bool = Field(False, description="LayerNorm only: learn an additive bias (DBRX: false).")
    placement: Literal["pre", "post", "sandwich"] = Field(
        "pre",
        description="pre: x + f(norm(x)); post: h = norm(x), then alpha*h + f(h), so each sub-layer's output "
        "is normalised before the next (MiniMax-01 with DeepNorm's alpha; the first norm sees the embedding); "
        "sandwich: x + norm(f(norm(x))) with four norms per block (Grok-1).",
    )
    residual_alpha: float = Field(
        1.0,
        description="Post-norm only: residual scale alpha in alpha*h + f(h), h = norm(x); MiniMax-Text-01 uses "
        "(2*num_layers)**0.25.",
        gt=0.0,
        le=1e3,
        allow_inf_nan=False,
    )


class EmbeddingSpec(Spec):
    """Input embedding and output head."""

    tied: bool = Field(False, description="Share the input embedding matrix with the LM head.")
    input_multiplier: float = Field(
        1.0, description="Scale applied to embeddings (Grok-1: sqrt(6144) = 78.38).", gt=0.0, le=1e6,
        allow_inf_nan=False,
    )
    logit_multiplier: float = Field(
        1.0,
        description="Scale applied to the final hidden state before the head (T5 tied: d_model**-0.5; "
        "Grok-1: 1/sqrt(3)).",
        gt=0.0,
        le=1e6,
        allow_inf_nan=False,
    )
    logit_softcap: float | None = Field(
        None, description="If set, logits = cap * tanh(logits / cap).", gt=0.0, le=1e6, allow_inf_nan=False
    )


Activation = Literal["swiglu", "geglu", "reglu", "relu", "gelu", "silu", "clamped_swiglu"]
GATED_ACTIVATIONS = frozenset({"swiglu", "geglu", "reglu", "clamped_swiglu"})


class FFNSpec(Spec):
    """The dense feed-forward network (used by dense layers; the width experts are measured against)."""

    hidden_dim: int = Dim("Width of the dense FFN (intermediate size).")
    activation: Activation = Field(
        "swiglu",
        description="swiglu/geglu/reglu: gated, 3 matrices (gate, up, down); relu/gelu/silu: 2 matrices; "
        "clamped_swiglu: gpt-oss's gated unit with clamping, out = g*sigmoid(alpha*g)*(u+1).",
    )
    bias: bool = Field(False, description="Biases on the FFN matrices.")
    clamp_limit: float | None = Field(
        None, description="clamped_swiglu only: clamp gate to (-inf, limit] and up to [-limit, limit].",
        gt=0.0, le=1e6, allow_inf_nan=False,
    )
    glu_alpha: float = Field(
        1.702, description="clamped_swiglu only: sigmoid slope alpha.", gt=0.0, le=1e3, allow_inf_nan=False
    )

    @property
    def num_matrices(self) -> int:
        return 3 if self.activation in GATED_ACTIVATIONS else 2


# --------------------------------------------------------------------------- positions


class YarnScaling(Spec):
    """YaRN context extension (Peng et al. 2023), as in DeepSeek-V2/V3 and gpt-oss."""

    kind: Literal["yarn"] = Field(description="YaRN NTK-by-parts interpolation with attention scaling.")
    factor: float = Field(description="Context extension factor s.", gt=1.0, le=1e4, allow_inf_nan=False)
    original_max_seq_len: int = Count("Context length the model was pre-trained at.", le=MAX_SEQ)
    beta_fast: float = Field(
        32.0, description="Rotations above which dimensions are kept (alpha).", gt=0.0, le=1e4, allow_inf_nan=False
    )
    beta_slow: float = Field(
        1.0, description="Rotations below which dimensions are interpolated.", gt=0.0, le=1e4, allow_inf_nan=False
    )
    mscale: float = Field(
        1.0, description="Attention temperature coefficient for the rotary cache.", ge=0.0, le=1e3, allow_inf_nan=False
    )
    mscale_all_dim: float = Field(
        0.0, description="DeepSeek's softmax-scale correction coefficient (0: none).", ge=0.0, le=1e3,
        allow_inf_nan=False,
    )
    truncate: bool = Field(True, description="Round the correction range to whole dimensions (gpt-oss: false).")


class Llama3Scaling(Spec):
    """Llama 3 frequency-dependent rope scaling."""

    kind: Literal["llama3"] = Field(description="Llama 3.1 style wavelength-dependent scaling.")
    factor: float = Field(description="Scale factor for low frequencies.", gt=1.0, le=1e4, allow_inf_nan=False)
    low_freq_factor: float = Field(
        1.0, description="Wavelength ratio below which frequencies are scaled.", gt=0, le=1e4, allow_inf_nan=False
    )
    high_freq_factor: float = Field(
        4.0, description="Wavelength ratio above which frequencies are kept.", gt=0, le=1e4, allow_inf_nan=False
    )
    original_max_seq_len: int = Count("Context length the model was pre-trained at.", le=MAX_SEQ)


class LinearScaling(Spec):
    """Position interpolation: positions divided by factor."""

    kind: Literal["linear"] = Field(description="Position interpolation (Chen et al. 2023).")
    factor: float = Field(description="Positions are divided by this.", gt=1.0, le=1e4, allow_inf_nan=False)


RopeScaling = Annotated[Union[YarnScaling, Llama3Scaling, LinearScaling], Field(discriminator="kind")]


class RopeSpec(Spec):
    """Rotary position embedding (Su et al. 2021)."""

    kind: Literal["rope"] = Field(description="Rotary position embedding.")
    theta: float = Field(10000.0, description="Base of the rotary frequencies.", gt=1.0, le=1e12, allow_inf_nan=False)
    rotary_dim: int | None = Field(
        None,
        description="Rotate only the first rotary_dim dims of each head (MiniMax: 64 of 128). "
        "Default: the whole head (MLA: qk_rope_head_dim).",
        ge=2,
        le=MAX_DIM,
    )
    scaling: RopeScaling | None = Field(None, description="Context-extension scaling, if any.")
    nope_layers: LayerSelector | None = Field(
        None, description="Layers that use no positional encoding at all (Llama 4: every 4th layer)."
    )


class T5RelativeSpec(Spec):
    """T5 relative position bias, computed in the first layer of each stack and shared by the rest."""

    kind: Literal["t5_relative"] = Field(description="Bucketed relative position bias added to attention logits.")
    num_buckets: int = Count("Number of relative-position buckets.", 32)
    max_distance: int = Count("Distance beyond which all positions share the last bucket.", 128, le=MAX_SEQ)


class NoPositionSpec(Spec):
    """No positional encoding."""

    kind: Literal["none"] = Field(description="No positional encoding (NoPE).")


PositionSpec = Annotated[Union[RopeSpec, T5RelativeSpec, NoPositionSpec], Field(discriminator="kind")]


# --------------------------------------------------------------------------- attention


class WindowSpec(Spec):
    """A local attention pattern applied to some layers."""

    size: int = Count("Window or chunk length in tokens.", le=MAX_SEQ)
    layers: LayerSelector = Field(default_factory=ALL_LAYERS, description="Layers that use it.")


class TemperatureTuningSpec(Spec):
    """Llama 4's attention temperature tuning on NoPE layers: q *= 1 + scale*log(floor((pos+1)/floor_scale)+1)."""

    scale: float = Field(0.1, description="attn_scale.", gt=0.0, le=10.0, allow_inf_nan=False)
    floor_scale: int = Count("Positions per temperature step.", 8192, le=MAX_SEQ)


class GQASpec(Spec):
    """Multi-head (num_kv_heads == num_heads) or grouped-query attention."""

    kind: Literal["mha", "gqa"] = Field(description="mha: one K/V head per query head; gqa: shared K/V heads.")
    num_heads: int = Count("Number of query heads.")
    num_kv_heads: int | None = Field(None, description="Number of key/value heads (default: num_heads).", ge=1, le=MAX_COUNT)
    head_dim: int | None = Field(None, description="Per-head width (default: model_dim / num_heads).", ge=1, le=MAX_DIM)
    qkv_bias: bool = Field(False, description="Biases on the q, k, v projections (Qwen2-MoE, gpt-oss).")
    out_bias: bool = Field(False, description="Bias on the output projection (gpt-oss).")
    qk_norm: Literal["none", "per_head", "full", "l2"] = Field(
        "none",
        description="Normalise queries and keys before rope: per_head RMSNorm over head_dim (Qwen3), "
        "full RMSNorm over the whole projection (OLMoE), l2 without weights (Llama 4 Scout).",
    )
    clip_qkv: float | None = Field(None, description="Clamp q, k, v to [-c, c] (DBRX: 8).", gt=0.0, le=1e6)
    logit_softcap: float | None = Field(None, description="Attention logits = c*tanh(logits/c) (Grok-1: 30).", gt=0.0, le=1e6)
    sinks: bool = Field(False, description="A learned logit per head appended to the softmax denominator (gpt-oss).")
    sliding_window: WindowSpec | None = Field(None, description="Sliding-window attention on some layers (gpt-oss).")
    chunked: WindowSpec | None = Field(None, description="Chunked local attention on some layers (Llama 4).")
    temperature_tuning: TemperatureTuningSpec | None = Field(
        None, description="Llama 4 attention temperature tuning, applied on NoPE layers."
    )
    softmax_scale: float | None = Field(
        None, description="Scale of q.k (default 1/sqrt(head_dim)).", gt=0.0, le=1e3, allow_inf_nan=False
    )


class MLASpec(Spec):
    """Multi-head latent attention (DeepSeek-V2 section 2.1): low-rank joint KV compression with a decoupled rope key."""

    kind: Literal["mla"] = Field(description="Multi-head latent attention.")
    num_heads: int = Count("Number of attention heads.")
    q_lora_rank: int | None = Field(
        None, description="Rank of the query compression c_Q (null: plain W_Q, as in V2-Lite).", ge=1, le=MAX_DIM
    )
    kv_lora_rank: int = Dim("Rank of the joint key/value latent c_KV (what the KV cache stores).")
    qk_nope_head_dim: int = Dim("Per-head query/key width without rope (from the latent).")
    qk_rope_head_dim: int = Dim("Per-head width of the decoupled rope query/key (the rope key is shared by all heads).")
    v_head_dim: int = Dim("Per-head value width.")
    softmax_scale: float | None = Field(
        None, description="Scale of q.k (default 1/sqrt(qk_nope+qk_rope), times YaRN's mscale correction).",
        gt=0.0, le=1e3, allow_inf_nan=False,
    )


AttentionSpec = Annotated[Union[GQASpec, MLASpec], Field(discriminator="kind")]


class LightningAttentionSpec(Spec):
    """MiniMax-01 hybrid: lightning (linear) attention on most layers, softmax attention on a few."""

    kind: Literal["lightning"] = Field(description="Lightning attention (linear attention computed in blocks).")
    num_heads: int = Count("Heads of the linear-attention layers.")
    head_dim: int = Dim("Per-head width of the linear-attention layers.")
    block_size: int = Count("Block length of the blockwise computation.", 256, le=MAX_SEQ)
    softmax_layers: LayerSelector = Field(description="Layers that keep softmax attention (the rest are linear).")


# --------------------------------------------------------------------------- MoE


class ExpertsSpec(Spec):
    """Routed and shared experts (DeepSeekMoE: fine-grained segmentation plus shared expert isolation)."""

    num_routed: int = Count("Number of routed experts per MoE layer (N_r).")
    hidden_dim: int = Dim("Width of one routed expert's FFN.")
    bias: bool = Field(False, description="Biases on the expert matrices (gpt-oss).")
    num_shared: int = Count("Number of always-on shared experts (N_s).", 0, ge=0)
    shared_hidden_dim: int | None = Field(
        None,
        description="Width of ONE shared expert (default: hidden_dim). Shared experts run fused as one "
        "FFN of width num_shared * shared_hidden_dim.",
        ge=1,
        le=MAX_DIM,
    )
    shared_gate: bool = Field(False, description="Qwen-MoE: scale the shared expert by sigmoid(x . w_gate).")
    reference_dense_dim: int | None = Field(
        None,
        description="Width of the dense FFN the experts replace, for the fine-grained ratio "
        "(default: ffn.hidden_dim).",
        ge=1,
        le=MAX_DIM,
    )


class GroupLimitSpec(Spec):
    """Group/device-limited routing: first pick top_groups groups, then top-k inside them."""

    num_groups: int = Count("Experts are split into this many equal groups (DeepSeek n_group; V2: devices).")
    top_groups: int = Count("Groups each token may route to (topk_group; V2's M devices).")
    group_score: Literal["max", "top2_sum"] = Field(
        "max", description="Score of a group: its best expert (V2) or the sum of its top-2 experts (V3)."
    )


class NoisyTopKSpec(Spec):
    """Shazeer et al. 2017: H(x) = x.W_g + N(0,1) * softplus(x.W_noise), during training."""

    kind: Literal["noisy_topk"] = Field(description="Learned, input-dependent Gaussian noise on router logits.")


class JitterSpec(Spec):
    """Switch Transformer: multiply router inputs by U(1-eps, 1+eps) during training."""

    kind: Literal["jitter"] = Field(description="Multiplicative uniform jitter on the router input.")
    eps: float = Field(0.01, description="Jitter half-width.", gt=0.0, lt=1.0, allow_inf_nan=False)


RouterNoise = Annotated[Union[NoisyTopKSpec, JitterSpec], Field(discriminator="kind")]


class CapacitySpec(Spec):
    """Expert capacity = tokens / experts * factor (* top_k for k > 1); overflow tokens skip the expert."""

    train_factor: float = Field(1.25, description="Capacity factor in training.", gt=0.0, le=1e4, allow_inf_nan=False)
    eval_factor: float = Field(2.0, description="Capacity factor in evaluation.", gt=0.0, le=1e4, allow_inf_nan=False)
    min_capacity: int = Count("Lower bound on the per-expert capacity.", 1, ge=0)


class TokenChoiceRouter(Spec):
    """Each token picks its top-k experts (the common case)."""

    kind: Literal["token_choice"] = Field(description="Token-choice top-k routing.")
    top_k: int = Count("Experts per token (K_r).")
    scoring: Literal["softmax", "sigmoid"] = Field(
        "softmax", description="Affinity function s = softmax(logits) or sigmoid(logits) (DeepSeek-V3, Llama 4)."
    )
    softmax_after_topk: bool = Field(
        False,
        description="Softmax only over the k selected logits (Mixtral, gpt-oss), instead of over all experts "
        "before selection (Switch, DeepSeek-V1/V2, Qwen).",
    )
    renormalize: bool = Field(False, description="Divide the k selected weights by their sum (norm_topk_prob).")
    scaling_factor: float = Field(
        1.0, description="Multiply routed weights by this (routed_scaling_factor).", gt=0.0, le=1e4, allow_inf_nan=False
    )
    bias: bool = Field(False, description="The router linear has a bias (gpt-oss).")
    float32: bool = Field(True, description="Compute routing in float32 (Switch, ST-MoE stability advice).")
    weight_on_input: bool = Field(
        False, description="Llama 4: scale the token by its routing weight before the expert instead of after."
    )
    groups: GroupLimitSpec | None = Field(None, description="Group-limited routing (DeepSeek-V2/V3).")
    noise: RouterNoise | None = Field(None, description="Training-time routing noise.")
    second_expert_sampled: bool = Field(
        False,
        description="GShard: dispatch the 2nd expert only with probability 2*g2 (training), else always.",
    )
    capacity: CapacitySpec | None = Field(None, description="Capacity factor with token dropping (null: dropless).")


class ExpertChoiceRouter(Spec):
    """Zhou et al. 2022: each expert picks its top-C tokens, C = tokens * capacity_factor / experts."""

    kind: Literal["expert_choice"] = Field(description="Expert-choice routing.")
    capacity_factor: float = Field(
        2.0, description="Average experts per token c (capacity C = T*c/E).", gt=0.0, le=1e4, allow_inf_nan=False
    )
    float32: bool = Field(True, description="Compute routing in float32.")


class HashRouter(Spec):
    """Roller et al. 2021: a fixed hash of the token id picks the expert; nothing is learned."""

    kind: Literal["hash"] = Field(description="Hash routing (a fixed random token-id -> expert table).")
    seed: int = Count("Seed of the token-to-expert table.", 0, ge=0, le=2**31 - 1)


RouterSpec = Annotated[Union[TokenChoiceRouter, ExpertChoiceRouter, HashRouter], Field(discriminator="kind")]


class DeviceBalanceSpec(Spec):
    """DeepSeek-V2 device-level balance loss over expert groups (devices)."""

    weight: float = Weight("alpha_2.")
    num_devices: int = Count("Number of devices D the experts are spread over (equal groups).")


class CommBalanceSpec(Spec):
    """DeepSeek-V2 communication balance loss."""

    weight: float = Weight("alpha_3.")
    num_devices: int = Count("Number of devices D.")
    top_devices: int = Count("Devices each token may be sent to (M).")


class AuxFreeSpec(Spec):
    """DeepSeek-V3 auxiliary-loss-free balancing: a per-expert bias added to scores for selection only."""

    update_rate: float = Field(
        0.001, description="Bias update speed gamma: b_i -= gamma*sign(load_i - mean load) after each step.",
        gt=0.0, le=1.0,
    )


class BalanceSpec(Spec):
    """Load-balancing losses and regularisers. Every weight defaults to 0 (off)."""

    aux_loss_weight: float = Weight(
        "Expert-level balance loss alpha * sum_i f_i P_i, P_i = mean routing probability of expert i, "
        "f_i as set by aux_loss_style (Switch eq. 4, DeepSeekMoE eq. 12)."
    )
    aux_loss_style: Literal["switch", "deepseek"] = Field(
        "switch",
        description="switch: f_i = E/T * (top-k assignments to i), equal to k when balanced (Switch, GShard, "
        "transformers); deepseek: f_i = E/(K T) * (assignments to i), equal to 1 when balanced (DeepSeekMoE).",
    )
    layer_reduction: Literal["sum", "hf_pooled"] = Field(
        "sum",
        description="sum: every MoE layer adds its own aux and z losses (Switch paper, Megatron, DeepSeek); "
        "hf_pooled: the statistics are pooled over all MoE layers' tokens into one aux loss and one z-loss "
        "(what transformers computes for Mixtral, Qwen-MoE, OLMoE, DBRX, gpt-oss); in an encoder_decoder, one "
        "pooled loss per stack with f_i and P_i per sequence, the two stacks added (transformers' Switch).",
    )
    sequence_aux_loss_weight: float = Weight(
        "DeepSeek-V3 complementary sequence-wise balance loss (f and P per sequence, scores normalised)."
    )
    z_loss_weight: float = Weight("Router z-loss (ST-MoE): mean of logsumexp(logits)**2.")
    device_balance: DeviceBalanceSpec | None = Field(None, description="DeepSeek-V2 device-level balance loss.")
    comm_balance: CommBalanceSpec | None = Field(None, description="DeepSeek-V2 communication balance loss.")
    aux_free: AuxFreeSpec | None = Field(None, description="DeepSeek-V3 auxiliary-loss-free bias balancing.")
    expert_dropout: float = Field(
        0.0, description="Dropout inside experts (Switch: 0.4 on expert layers while fine-tuning).", ge=0.0, lt=1.0
    )


class MoESpec(Spec):
    """Where the MoE layers are and how they route."""

    layers: LayerSelector = Field(
        default_factory=ALL_LAYERS, description="Which layers (of each stack) are MoE; the rest are dense."
    )
    experts: ExpertsSpec = Field(description="Routed and shared experts.")
    router: RouterSpec = Field(description="The routing function.")
    balance: BalanceSpec = Field(default_factory=BalanceSpec, description="Balance losses and regularisers.")
    extra_dense_ffn: bool = Field(
        False, description="ST-MoE: each MoE layer also has a dense FFN sub-layer after the MoE sub-layer."
    )


class MTPSpec(Spec):
    """DeepSeek-V3 multi-token prediction: D sequential modules, each predicting one more token ahead."""

    depth: int = Count("Number of MTP modules D (each predicts one token further).")
    loss_weight: float | None = Field(
        None, description="lambda: the MTP loss weight (V3: 0.3, later 0.1).", gt=0.0, le=1e3
    )
    moe_layer: bool = Field(True, description="The module's transformer block has an MoE FFN (V3) rather than a dense one.")


# --------------------------------------------------------------------------- reference block


class PublishedFigure(Spec):
    """A published parameter count and the convention it uses."""

    value: int = Field(description="The published number, in parameters.", ge=1, le=1 << 50)
    convention: Literal[
        "total", "total_with_mtp", "with_embedding_and_head", "without_input_embedding", "without_embedding_and_head"
    ] = Field("total", description="What the published number counts.")
    rel_tolerance: float = Field(
        0.02, description="Relative difference tolerated before moezoo flags a disagreement.", gt=0.0, le=1.0
    )
    source: PlainText = Field("", description="Where the number was published.", max_length=500)


class ReferenceSpec(Spec):
    """What the spec was checked against."""

    total_params: PublishedFigure | None = Field(None, description="Published total parameters.")
    active_params: PublishedFigure | None = Field(None, description="Published active parameters per token.")
    hf_repo: str | None = Field(
        None, description="Hugging Face repo id of the checkpoint.", pattern=r"^[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+$"
    )
    hf_model_type: str | None = Field(None, description="transformers model_type it corresponds to.", pattern=IDENTIFIER)
    sources: list[Annotated[PlainText, Field(max_length=2000)]] = Field(
        default_factory=list, description="URLs of configs, papers and code used.", max_length=64
    )
    notes: PlainTextBlock = Field("", description="Known discrepancies and decisions.", max_length=4000)


# --------------------------------------------------------------------------- the model


class ModelSpec(Spec):
    """One Mixture-of-Experts language model architecture."""

    name: str = Field(description="Identifier of the model (snake_case); names the output folder.", pattern=IDENTIFIER)
    family: str = Field(description="Family the model belongs to (e.g. deepseek, mixtral, switch).", pattern=IDENTIFIER)
    description: PlainText = Field(
        description="One-line description.", min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]*$"
    )
    architecture: Literal["decoder_only", "encoder_decoder"] = Field(
        "decoder_only", description="Decoder-only LM, or a T5-style encoder-decoder."
    )
    vocab_size: int = Count("Vocabulary size V.", le=1 << 24)
    source_vocab_size: int | None = Field(
        None,
        description="encoder_decoder only: vocabulary of the encoder input when it differs from the decoder's "
        "(GShard: 64000 source, 32000 target). The encoder then has its own embedding.",
        ge=1,
        le=1 << 24,
    )
    model_dim: int = Dim("Residual stream width d_model (h).")
    num_layers: int = Count("Number of decoder layers (the only stack of a decoder-only model).", le=4096)
    num_encoder_layers: int = Count("Encoder layers (encoder_decoder only; 0 otherwise).", 0, ge=0, le=4096)
    max_seq_len: int = Count("Maximum context length (max_position_embeddings).", 4096, le=MAX_SEQ)
    norm: NormSpec = Field(default_factory=NormSpec, description="Normalisation.")
    embedding: EmbeddingSpec = Field(default_factory=EmbeddingSpec, description="Embedding and head.")
    position: PositionSpec = Field(description="Positional encoding.")
    attention: AttentionSpec = Field(description="Attention (softmax layers).")
    hybrid_attention: LightningAttentionSpec | None = Field(
        None, description="Linear-attention layers mixed with softmax attention (MiniMax-01)."
    )
    ffn: FFNSpec = Field(description="Dense FFN, also the activation used by the experts.")
    moe: MoESpec | None = Field(None, description="Mixture-of-Experts layers (null: a dense model).")
    mtp: MTPSpec | None = Field(None, description="Multi-token prediction modules (DeepSeek-V3).")
    reference: ReferenceSpec | None = Field(None, description="Published figures and sources.")

    @model_validator(mode="after")
    def _cross_field_checks(self) -> "ModelSpec":
        from moezoo.spec.checks import raise_for_errors

        raise_for_errors(self)
        return self

    # Derived helpers used by every later stage.
    @property
    def is_encoder_decoder(self) -> bool:
        return self.architecture == "encoder_decoder"

    def stacks(self) -> list[tuple[str, int]]:
        """(stack name, layer count) for each stack, encoder first."""
        if self.is_encoder_decoder:
            return [("encoder", self.num_encoder_layers), ("decoder", self.num_layers)]
        return [("decoder", self.num_layers)]

    def is_moe_layer(self, index: int) -> bool:
        return self.moe is not None and self.moe.layers.selects(index)
