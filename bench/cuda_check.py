"""Generated models on a CUDA GPU: bf16 autocast, grouped GEMM vs the reference loop, torch.compile, speed.

Needs only torch and the generated folders (a GPU machine need not have moezoo installed):

    moezoo build specs/mixtral_8x7b.yaml specs/deepseek_v3.yaml --tiny -o builds   # where moezoo is
    python bench/cuda_check.py builds/mixtral_8x7b builds/deepseek_v3 [--batch 16 --seq 256 --set model_dim=512]

For each build, on the same random batch:
  1. float32, the grouped path vs the per-expert loop, whole model: max |logit diff|;
  2. bf16 autocast, one MoE layer: grouped GEMM kernel vs the loop, relative to the output's size;
  3. bf16 autocast forward + backward of the whole model: loss and every gradient finite;
  4. torch.compile of the whole model: logits equal to eager in float32, and the first call's time;
  5. time of one bf16 forward + backward, eager vs compiled (median of --repeats), and tokens/s.
Prints one line per check; the exit code is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch


def load(build: Path):
    spec = importlib.util.spec_from_file_location(f"cuda_check_{build.name}", build / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse_set(config_cls, items: list[str]) -> dict:
    types = {f.name: f.type for f in dataclasses.fields(config_cls)}
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        if key not in types:
            raise SystemExit(f"--set {item}: ModelConfig has no field {key!r}")
        out[key] = float(text) if "float" in str(types[key]) else int(text) if "int" in str(types[key]) else text
    return out


def run(model, batch: dict, encdec: bool):
    if encdec:
        return model(batch["src"], decoder_input_ids=batch["tgt"], labels=batch["labels"])
    return model(batch["ids"], labels=batch["labels"])


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> float:
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check(build: Path, args) -> bool:
    m = load(build)
    overrides = parse_set(m.ModelConfig, args.set)
    torch.manual_seed(0)
    dev = args.device
    model = m.Model(m.ModelConfig(**overrides)).to(dev)
    if hasattr(model, "init_weights"):
        model.init_weights()
    config = model.config
    encdec = hasattr(model, "encoder")
    V, B, T = config.vocab_size, args.batch, args.seq
    g = torch.Generator(device=dev).manual_seed(1)
    ids = torch.randint(0, V, (B, T), device=dev, generator=g)
    batch = {"ids": ids, "labels": ids, "src": ids, "tgt": ids[:, : T // 2]}
    if encdec:
        batch["labels"] = ids[:, : T // 2]
    ok = True

    def report(name: str, good: bool, detail: str) -> None:
        nonlocal ok
        ok &= good
        print(f"  {'ok  ' if good else 'FAIL'} {name}: {detail}", flush=True)

    print(f"{build.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, batch {B} x {T}, "
          f"{torch.cuda.get_device_name() if dev.startswith('cuda') else dev}, torch {torch.__version__}", flush=True)
    def set_impl(impl: str) -> None:
        for mod in model.modules():
            if hasattr(mod, "forward_loop"):  # the Experts modules
                mod.impl = impl

    model.eval()
    with torch.no_grad():
        grouped = run(model, batch, encdec).logits
        set_impl("loop")
        loop = run(model, batch, encdec).logits
        set_impl("grouped_mm")
    diff = (grouped - loop).abs().max().item()
    report("float32 grouped path == loop (whole model)", diff < 1e-3, f"max |logit diff| {diff:.2e}")

    # bf16: the grouped GEMM kernel itself (float32 on CUDA falls back to per-expert matmuls). One MoE layer on
    # one input, so both paths route identically (the router runs in float32) and only the expert math differs.
    moe = next(mod for mod in model.modules() if type(mod).__name__ == "MoE")
    x = torch.randn(B, T, config.model_dim, device=dev, generator=g)
    with torch.no_grad(), torch.autocast(torch.device(dev).type, dtype=torch.bfloat16):
        a = moe(x)[0].float()
        set_impl("loop")
        b = moe(x)[0].float()
        set_impl("grouped_mm")
    rel = ((a - b).abs().max() / b.abs().max()).item()
    report("bf16 grouped GEMM == loop (one MoE layer)", rel < 2e-2, f"max diff / max |out| {rel:.2e}")

    model.train()
    with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16):
        out = run(model, batch, encdec)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    finite = torch.isfinite(out.loss).item() and all(gr is None or torch.isfinite(gr).all().item() for gr in grads)
    reached = sum(gr is not None and gr.abs().sum().item() > 0 for gr in grads)
    report("bf16 autocast forward + backward", finite, f"loss {out.loss.item():.4f}, {reached}/{len(grads)} "
           "parameters got a non-zero gradient")
    model.zero_grad(set_to_none=True)

    # Compiled vs eager in float32: in bf16 the two round differently, and a token whose top experts nearly tie
    # may then pick another expert, which is not a compiler bug. float32 keeps the routing identical.
    model.eval()
    compiled = torch.compile(model)
    with torch.no_grad():
        eager = run(model, batch, encdec).logits
        start = time.perf_counter()
        comp = run(compiled, batch, encdec).logits
        sync(dev)
        compile_s = time.perf_counter() - start
    diff = (comp - eager).abs().max().item()
    report("torch.compile == eager (float32)", diff < 1e-3, f"max |logit diff| {diff:.2e}; first call {compile_s:.1f} s")

    model.train()

    def step(net):
        def go():
            with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16):
                loss = run(net, batch, encdec).loss
            loss.backward()
            for p in net.parameters():
                p.grad = None
        return go

    eager_s = timed(step(model), args.repeats, dev)
    compiled_s = timed(step(compiled), args.repeats, dev)
    tokens = B * T * (1.5 if encdec else 1)
    print(f"  time of one bf16 forward + backward: eager {1e3 * eager_s:.1f} ms ({tokens / eager_s:,.0f} tok/s), "
          f"compiled {1e3 * compiled_s:.1f} ms ({tokens / compiled_s:,.0f} tok/s), speed-up "
          f"{eager_s / compiled_s:.2f}x", flush=True)
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("builds", nargs="+", type=Path, help="folders holding a generated model.py")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="ModelConfig override")
    p.add_argument("--device", default="cuda", help="cuda (the point of it); cpu runs the same checks slowly")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    results = [check(build, args) for build in args.builds]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
