"""`--tiny`: shrink a spec to CPU size while keeping every architectural feature.

The rules (also in docs/tiny.md):
- widths: model_dim 64; 4 query heads of 16 dims; GQA keeps a ratio (H_kv = 1 or 2 of 4, MHA stays MHA);
  MLA: q rank 32 (if the spec compresses queries), KV rank 32, nope 16 / rope 8 / v 16 per head;
- vocabulary 256 (byte-level tokens; encoder-decoders 384: bytes plus 128 ids for T5's sentinels), context
  256 tokens; sliding windows and chunks 16 tokens;
- FFN: dense width 128; expert width keeps the fine-grained ratio (128 * ratio, rounded up to 16),
  shared experts likewise;
- experts: at most 8 routed, top-k at most 2 (as many as the spec has if fewer); group-limited routing
  keeps at least 2 groups and selects fewer groups than exist; device counts shrink to divide the experts;
- depth: layer selectors with a period over 4 are compressed to period 4, keeping their phase
  (first / last / middle of the period); the model keeps a dense prefix of 1 layer if it had one, then two
  periods of the layer pattern; MTP keeps its depth;
- multipliers tied to the width (sqrt(D), 1/sqrt(D), (2L)^0.25) follow the new width / depth;
- the reference block is dropped (the published figures are for the full-size model).
"""

from __future__ import annotations

import math
from typing import Any

from moezoo.spec.schema import ModelSpec

TINY_DIM = 64
TINY_HEADS = 4
TINY_HEAD_DIM = 16
TINY_VOCAB = 256
TINY_SENTINELS = 128  # encoder-decoders: ids above the bytes for span-corruption sentinels
TINY_SEQ = 256
TINY_FFN = 128
TINY_EXPERTS = 8
TINY_WINDOW = 16
MAX_PERIOD = 4


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-3 * abs(b)


def _round_up(x: float, m: int) -> int:
    return max(m, int(math.ceil(x / m)) * m)


def _selector(sel: dict | None) -> tuple[dict | None, int]:
    """Compress a layer selector's period; returns the new selector and its period."""
    if sel is None:
        return None, 1
    if sel.get("pattern") is not None:
        return sel, 1
    every, offset = sel.get("every", 1), sel.get("offset", 0)
    if every > MAX_PERIOD:
        if offset == every - 1:
            offset = MAX_PERIOD - 1
        elif offset:
            offset = max(1, round(offset * MAX_PERIOD / every)) % MAX_PERIOD
        every = MAX_PERIOD
    out = dict(sel, every=every, offset=offset)
    if out.get("start"):
        out["start"] = 1
    return out, every


def moe_sel_hit(ch: str, invert: bool) -> bool:
    return (ch in "Mm1x") != invert


def tiny_spec(spec: ModelSpec) -> ModelSpec:
    d: dict[str, Any] = spec.model_dump(mode="python", exclude_none=True)
    D0 = spec.model_dim
    d["vocab_size"] = TINY_VOCAB + (TINY_SENTINELS if spec.is_encoder_decoder else 0)
    if "source_vocab_size" in d:
        d["source_vocab_size"] = d["vocab_size"]
    d["model_dim"] = TINY_DIM
    d["max_seq_len"] = TINY_SEQ
    d["description"] = (spec.description[:280] + " (tiny build)")
    d.pop("reference", None)

    emb = d.get("embedding", {})
    for key in ("input_multiplier", "logit_multiplier"):
        m = emb.get(key, 1.0)
        if _close(m, D0**0.5):
            emb[key] = TINY_DIM**0.5
        elif _close(m, D0**-0.5):
            emb[key] = TINY_DIM**-0.5

    # attention
    att = d["attention"]
    if att["kind"] == "mla":
        att["num_heads"] = TINY_HEADS
        if att.get("q_lora_rank"):
            att["q_lora_rank"] = 32
        att.update(kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)
    else:
        H0 = att["num_heads"]
        kv0 = att.get("num_kv_heads") or H0
        hd0 = att.get("head_dim") or D0 // H0
        att["num_heads"] = TINY_HEADS
        att["head_dim"] = TINY_HEAD_DIM
        if kv0 == H0:
            att["num_kv_heads"] = TINY_HEADS
        else:
            att["num_kv_heads"] = 1 if H0 // kv0 >= 4 else 2
        if att.get("softmax_scale") is not None and _close(att["softmax_scale"], hd0**-0.5):
            att["softmax_scale"] = TINY_HEAD_DIM**-0.5
        for key in ("sliding_window", "chunked"):
            if key in att:
                att[key]["size"] = min(att[key]["size"], TINY_WINDOW)
                att[key]["layers"], _ = _selector(att[key].get("layers"))
        if "temperature_tuning" in att:
            att["temperature_tuning"]["floor_scale"] = TINY_WINDOW

    pos = d["position"]
    if pos["kind"] == "rope":
        if pos.get("rotary_dim"):
            pos["rotary_dim"] = TINY_HEAD_DIM // 2
        if pos.get("nope_layers"):
            pos["nope_layers"], _ = _selector(pos["nope_layers"])

    if "hybrid_attention" in d:
        h = d["hybrid_attention"]
        h.update(num_heads=TINY_HEADS, head_dim=TINY_HEAD_DIM, block_size=TINY_WINDOW)
        h["softmax_layers"], _ = _selector(h["softmax_layers"])

    d["ffn"]["hidden_dim"] = TINY_FFN

    # layer count: a dense prefix of 1 if any, then two periods of every periodic pattern
    periods = [1]
    moe = d.get("moe")
    prefix = 0
    if moe is not None:
        moe["layers"], p = _selector(moe.get("layers", {}))
        periods.append(p)
        prefix = 1 if moe["layers"].get("start") else 0
        ex = moe["experts"]
        ratio = spec.moe.experts.hidden_dim / (spec.moe.experts.reference_dense_dim or spec.ffn.hidden_dim)
        ex["hidden_dim"] = min(TINY_FFN * 4, _round_up(TINY_FFN * ratio, 16))
        if ex.get("reference_dense_dim"):
            ex["reference_dense_dim"] = TINY_FFN
        if ex.get("shared_hidden_dim"):
            s_ratio = ex["shared_hidden_dim"] / spec.moe.experts.hidden_dim
            ex["shared_hidden_dim"] = _round_up(ex["hidden_dim"] * s_ratio, 16)
        E0 = ex["num_routed"]
        E = min(E0, TINY_EXPERTS)
        ex["num_routed"] = E
        r = moe["router"]
        if r["kind"] == "token_choice":
            k0 = r["top_k"]
            r["top_k"] = min(k0, 2, E)
            g = r.get("groups")
            if g is not None:
                G = min(g["num_groups"], E // 2) if g["num_groups"] > 1 else 1
                G = max(G, 2) if E >= 4 else G
                while E % G:
                    G -= 1
                top = max(1, min(G - 1, round(g["top_groups"] * G / g["num_groups"])))
                while top * (E // G) < r["top_k"]:
                    top += 1
                g.update(num_groups=G, top_groups=top)
            if r.get("second_expert_sampled") and r["top_k"] != 2:
                r["second_expert_sampled"] = False
        bal = moe.get("balance", {})
        for key in ("device_balance", "comm_balance"):
            if key in bal:
                n = math.gcd(bal[key]["num_devices"], E)
                bal[key]["num_devices"] = max(1, n)
                if key == "comm_balance":
                    bal[key]["top_devices"] = min(bal[key]["top_devices"], bal[key]["num_devices"])
    for sel in (d["attention"].get("sliding_window", {}).get("layers"), d["attention"].get("chunked", {}).get("layers"),
                pos.get("nope_layers") if pos["kind"] == "rope" else None,
                d.get("hybrid_attention", {}).get("softmax_layers")):
        if sel and sel.get("pattern") is None:
            periods.append(sel.get("every", 1))
    period = math.lcm(*periods)
    layers = prefix + 2 * period
    # Explicit patterns (one character per layer) are cut to the tiny depth, all to the same length: at least
    # the periodic rules' depth and 8 layers, at most the spec's own depth.
    patterned = [sel for sel in (moe["layers"] if moe is not None else None,
                                 d["attention"].get("sliding_window", {}).get("layers"),
                                 d["attention"].get("chunked", {}).get("layers"),
                                 pos.get("nope_layers") if pos["kind"] == "rope" else None,
                                 d.get("hybrid_attention", {}).get("softmax_layers"))
                 if sel and sel.get("pattern") is not None]
    if patterned:
        layers = min(spec.num_layers, max(layers, 8))
        for sel in patterned:
            sel["pattern"] = sel["pattern"][:layers]
    if moe is not None and moe["layers"].get("pattern") is not None:
        pattern = moe["layers"]["pattern"]
        if not any(moe_sel_hit(ch, moe["layers"].get("invert", False)) for ch in pattern):
            pattern = pattern[:-1] + ("D" if moe["layers"].get("invert") else "M")
        moe["layers"]["pattern"] = pattern
    d["num_layers"] = layers
    if d.get("num_encoder_layers"):
        d["num_encoder_layers"] = layers
    norm = d.get("norm", {})
    if norm.get("placement") == "post" and _close(norm.get("residual_alpha", 1.0), (2 * spec.num_layers) ** 0.25):
        norm["residual_alpha"] = (2 * layers) ** 0.25
    return ModelSpec.model_validate(d)
