"""KV-cached decoding of the generated decoder-only models (issue 11 item 5), on tiny builds.

Two checks per attention kind: (1) greedy tokens through `Model.generate` (prompt once into a Cache, then one
position per token) equal greedy tokens from re-reading the whole sequence every step, and the cached logits
equal the full forward's; (2) the bytes the cache holds equal the report's figure: float32 here, so
`kv_cache_bytes_per_sequence(tiny spec, tokens, dtype_bytes=4)` per sequence (moezoo.accounting), which caps
sliding-window layers at the window, chunked layers at one chunk and counts a d x d state per lightning layer.
The prompt (20) plus 30 new tokens pass every tiny window, chunk and lightning block."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moezoo.accounting import kv_cache_bytes_per_sequence
from moezoo.codegen.tiny import tiny_spec
from moezoo.spec.loader import load_spec

REPO = Path(__file__).resolve().parents[1]
CASES = ["deepseek_v3", "deepseek_v2_lite", "mixtral_8x7b", "gpt_oss_20b", "llama4_scout", "minimax_text_01"]


@pytest.mark.parametrize("name", CASES)
def test_cached_greedy_equals_rereading_and_bytes_equal_the_report(name, model_module):
    m = model_module(name)
    torch.manual_seed(0)
    model = m.Model(m.ModelConfig()).eval()
    B, prompt, new = 2, 20, 30
    ids = torch.randint(0, model.config.vocab_size, (B, prompt))
    with torch.no_grad():
        seq = ids
        for _ in range(new):  # the reference: no cache, the whole sequence every step
            seq = torch.cat([seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        assert torch.equal(model.generate(ids, new), seq[:, prompt:])

        cache = m.Cache([{} for _ in model.layers])
        steps = [model(seq[:, :prompt], cache=cache).logits]
        steps += [model(seq[:, t : t + 1], cache=cache).logits for t in range(prompt, prompt + new)]
        full = model(seq[:, : prompt + new]).logits
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)
    assert cache.pos == prompt + new
    spec = tiny_spec(load_spec(REPO / "specs" / f"{name}.yaml").spec)
    report = B * kv_cache_bytes_per_sequence(spec, prompt + new, dtype_bytes=4)
    if name == "llama4_scout":  # the report counts a full chunk per chunked layer (the most it holds); after
        assert cache.nbytes() <= report  # 50 tokens the current chunk is only partly filled
    else:
        assert cache.nbytes() == report
