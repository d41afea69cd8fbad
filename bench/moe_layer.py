"""Speed of one generated MoE layer: sort-by-expert + grouped GEMM vs the plain per-expert loop.

Builds the tiny Mixtral and DeepSeek-V3 models with moezoo, widens their MoE layer to a "tiny-ish" size
and times forward + backward of that layer alone, both implementations on the same weights and inputs in the
same run, interleaved (loop, grouped, then grouped, loop, ...) so that a busy machine slows both alike.

    python bench/moe_layer.py [--tokens 2048] [--repeats 5] [--device cpu|cuda] [--dtype float32|bfloat16]
                              [--builds DIR]

--builds DIR takes DIR/mixtral_8x7b/model.py and DIR/deepseek_v3/model.py from an earlier
`moezoo build specs/mixtral_8x7b.yaml specs/deepseek_v3.yaml --tiny -o DIR`, so a GPU machine with only
torch can run it.

Prints one row per layer shape: median (min-max) of each and the speed ratio loop / grouped of the medians
(> 1: the grouped GEMM is faster), with the min-max of the per-round ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    # name: (spec, ModelConfig overrides)
    "Mixtral-like (D=512, E=8, K=2, F=1792)": ("mixtral_8x7b", dict(model_dim=512, num_experts=8, top_k=2, expert_hidden_dim=1792)),
    "DeepSeek-like (D=512, E=64, K=6, F=128, 2 shared)": (
        "deepseek_v3",
        dict(model_dim=512, num_experts=64, top_k=6, expert_hidden_dim=128, num_shared_experts=2,
             shared_hidden_dim=128, num_groups=8, top_groups=4),
    ),
}


def load_model_module(spec_name: str, outdir: Path, builds: Path | None = None):
    if builds is not None:
        target = builds / spec_name
    else:
        from moezoo.codegen import render, write
        from moezoo.spec import load_spec
        from moezoo.zoo import specs_dir

        target = write(render(load_spec(specs_dir() / f"{spec_name}.yaml"), tiny=True), outdir)
    spec = importlib.util.spec_from_file_location(f"bench_{spec_name}", target / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def layer_step(moe, x):
    def step():
        out, _ = moe(x)
        out.float().pow(2).mean().backward()

    return step


def timed(step, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_interleaved(steps: dict, repeats: int, device: str) -> dict[str, list[float]]:
    """One warm-up call each, then `repeats` rounds in alternating order (A B, B A, ...)."""
    for step in steps.values():
        step()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(steps[name], device))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per batch (B*T)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--builds", type=Path, default=None, help="prebuilt tiny builds (see above)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, device {args.device}, {args.dtype}, {args.tokens} tokens, "
          f"threads {torch.get_num_threads()}, median of {args.repeats}")
    print("| layer | loop (ms) | grouped GEMM (ms) | speed-up (min-max of rounds) |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (spec_name, overrides) in SHAPES.items():
            m = load_model_module(spec_name, Path(tmp), args.builds)
            steps = {}
            for impl in ("loop", "grouped_mm"):
                torch.manual_seed(0)  # same seed: both variants get the same weights and the same input
                config = m.ModelConfig(expert_impl=impl, **overrides)
                moe = m.MoE(config).to(args.device)
                for mod in moe.modules():
                    if hasattr(mod, "reset_parameters") and mod is not moe:
                        mod.reset_parameters()
                moe = moe.to(dtype)
                torch.manual_seed(1)
                x = torch.randn(1, args.tokens, config.model_dim, device=args.device, dtype=dtype, requires_grad=True)
                steps[impl] = layer_step(moe, x)
            t = time_interleaved(steps, args.repeats, args.device)
            loop, grouped = statistics.median(t["loop"]), statistics.median(t["grouped_mm"])
            rounds = [a / b for a, b in zip(t["loop"], t["grouped_mm"])]
            print(
                f"| {label} | {1e3 * loop:.1f} ({1e3 * min(t['loop']):.1f}-{1e3 * max(t['loop']):.1f}) "
                f"| {1e3 * grouped:.1f} ({1e3 * min(t['grouped_mm']):.1f}-{1e3 * max(t['grouped_mm']):.1f}) "
                f"| {loop / grouped:.2f}x ({min(rounds):.2f}-{max(rounds):.2f}) |"
            )


if __name__ == "__main__":
    main()
