"""moezoo's generated model against transformers' implementation of the same model, side by side.

For each family (DeepSeek-V3, Mixtral, Qwen3-MoE; DeepSeek-V2 at the GPU size) the script makes a random
transformers model from one config, saves it with save_pretrained, and takes the user's path to the generated
model: `moezoo import-hf` -> `moezoo build` -> `Model.from_hf`. Both hold the same weights; the logits on one
batch must agree (float32, eval) before anything is timed. Then, in one process and interleaved (A B, B A,
A B ... so that drift of a shared machine hits both sides alike), it times

    train     forward + backward + AdamW step (torch.optim.AdamW(fused=True), the same on both sides), B x T
              tokens, labels = the next tokens (the loss includes the balance loss wherever transformers computes
              one for the family: output_router_logits=True)
    prefill   forward under no_grad, B x T tokens (transformers with use_cache=False)
    decode    greedy generation of N new tokens after a prompt: transformers' generate with its default
              DynamicCache, moezoo's Model.generate (whether it uses a cache is detected at run time by
              watching the sequence length its forward passes receive, and printed in the row label)

eagerly and, with --compile, under torch.compile (torch.compile(model) on both sides, moezoo's Experts.forward
left eager as the generated train.py --compile does; compiling takes minutes on CPU; no decode rows). It prints
medians, the spread (min-max), the ratio transformers time / moezoo time (> 1: moezoo is faster; its spread
is the min-max of the per-round ratios), and each side's peak memory for the work. With one CPU thread (the
default) it times by this process's CPU time (--clock cpu), which other jobs on a shared machine barely move.

Peak memory: on CPU, one subprocess per (family, side, work) loads the model, releases free heap memory
(malloc_trim), resets the kernel's peak-RSS counter (`echo 5 > /proc/self/clear_refs`), runs the work once
(the first train step allocates the gradients and AdamW state) and reports VmHWM - VmRSS-before, i.e. the
memory the work adds on top of the loaded weights (tracemalloc cannot see torch's allocations). On CUDA:
torch.cuda.max_memory_allocated() - memory_allocated() before, in process, after the warm-up (so a train
step's figure holds gradients and activations; the AdamW state is already resident). Eager mode only.

    python bench/vs_transformers.py                        # CPU, float32, 1 thread, size small
    python bench/vs_transformers.py --size tiny --repeats 3 --no-memory      # a smoke run in seconds
    python bench/vs_transformers.py --compile              # adds the torch.compile rows (minutes on CPU)
    python bench/vs_transformers.py --gpu                  # CUDA, bf16 autocast, DeepSeek-V2-Lite widths

--gpu is --device cuda --autocast bf16 --size gpu --threads 0 --batch 4 --seq 2048 and adds tokens/s and MFU
(FLOPs per token from `moezoo report`, peak --peak-tflops, default 989 = H100 SXM dense bf16). Needs moezoo
and transformers installed (`pip install -e '.[test]'`).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
FAMILIES = ("deepseek_v3", "mixtral", "qwen3_moe")
GPU_FAMILIES = ("deepseek_v2", "deepseek_v3", "mixtral", "qwen3_moe")
YARN = {
    "rope_type": "yarn",
    "rope_theta": 10000.0,
    "factor": 4.0,
    "original_max_position_embeddings": 1024,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
}


def hf_config(family: str, size: str, layers: int | None) -> dict:
    """transformers config kwargs of one family at one size; every routing feature of the family on."""
    d, L, V, E = {"tiny": (64, 2, 512, 8), "small": (256, 4, 4096, 32), "medium": (512, 6, 16384, 64)}.get(
        size, (0, 0, 0, 0)
    )
    if size == "gpu":
        return gpu_config(family, layers or (2 if family == "qwen3_moe" else 3))
    L = layers or L
    if family == "deepseek_v3":  # q compression, sigmoid + bias, group-limited (top-2-sum), renormalised, scaled
        return {
            "vocab_size": V,
            "hidden_size": d,
            "intermediate_size": 3 * d,
            "moe_intermediate_size": d // 2 if E <= 8 else d * 3 // 8,
            "num_hidden_layers": L,
            "num_attention_heads": d // 32,
            "num_key_value_heads": d // 32,
            "n_routed_experts": E,
            "n_shared_experts": 1,
            "num_experts_per_tok": 4 if E > 8 else 2,
            "first_k_dense_replace": 1,
            "q_lora_rank": d // 2,
            "kv_lora_rank": d // 4,
            "qk_nope_head_dim": 32,
            "qk_rope_head_dim": 16,
            "v_head_dim": 32,
            "n_group": 4,
            "topk_group": 2,
            "routed_scaling_factor": 2.5,
            "norm_topk_prob": True,
            "num_nextn_predict_layers": 0,
            "max_position_embeddings": 4096,
            "rope_parameters": YARN,
        }
    if family == "mixtral":
        return {
            "vocab_size": V,
            "hidden_size": d,
            "intermediate_size": 2 * d,
            "num_hidden_layers": L,
            "num_attention_heads": d // 32,
            "num_key_value_heads": d // 64,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "sliding_window": None,
            "router_aux_loss_coef": 0.02,
            "output_router_logits": True,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        }
    if family == "qwen3_moe":  # fine-grained experts, QK-norm, renormalised top-k
        return {
            "vocab_size": V,
            "hidden_size": d,
            "intermediate_size": 3 * d,
            "moe_intermediate_size": d // 2,
            "num_hidden_layers": L,
            "num_attention_heads": d // 32,
            "num_key_value_heads": d // 64,
            "head_dim": 32,
            "num_experts": E,
            "num_experts_per_tok": 4 if E > 8 else 2,
            "norm_topk_prob": True,
            "decoder_sparse_step": 1,
            "router_aux_loss_coef": 0.001,
            "output_router_logits": True,
            "max_position_embeddings": 4096,
        }
    raise SystemExit(f"unknown family {family!r}; choose from {', '.join(GPU_FAMILIES)}")


def gpu_config(family: str, layers: int) -> dict:
    """Real widths and expert counts, few layers, so both models with gradients and AdamW state fit one GPU."""
    if (
        family == "deepseek_v2"
    ):  # DeepSeek-V2-Lite (specs/deepseek_v2_lite.yaml): 2048 wide, 64 experts top-6 + 2 shared
        return {
            "vocab_size": 102400,
            "hidden_size": 2048,
            "intermediate_size": 10944,
            "moe_intermediate_size": 1408,
            "num_hidden_layers": layers,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "n_routed_experts": 64,
            "n_shared_experts": 2,
            "num_experts_per_tok": 6,
            "first_k_dense_replace": 1,
            "q_lora_rank": None,
            "kv_lora_rank": 512,
            "qk_nope_head_dim": 128,
            "qk_rope_head_dim": 64,
            "v_head_dim": 128,
            "topk_method": "greedy",
            "n_group": 1,
            "topk_group": 1,
            "routed_scaling_factor": 1.0,
            "norm_topk_prob": False,
            "max_position_embeddings": 163840,
            "rope_parameters": {
                "rope_type": "yarn",
                "rope_theta": 10000.0,
                "factor": 40.0,
                "original_max_position_embeddings": 4096,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "mscale": 0.707,
                "mscale_all_dim": 0.707,
            },
        }
    # V3 routing and query compression at V2-Lite widths (V3's own 7168 x 256 experts do not fit)
    if family == "deepseek_v3":
        return dict(
            gpu_config("deepseek_v2", layers),
            q_lora_rank=512,
            n_shared_experts=1,
            num_experts_per_tok=8,
            topk_method="noaux_tc",
            n_group=8,
            topk_group=4,
            routed_scaling_factor=2.5,
            norm_topk_prob=True,
            num_nextn_predict_layers=0,
        )
    if family == "mixtral":  # Mixtral's shape (8 experts top-2, GQA 4:1, FFN 3.5 x d) at 2048 wide
        return {
            "vocab_size": 32000,
            "hidden_size": 2048,
            "intermediate_size": 7168,
            "num_hidden_layers": layers,
            "num_attention_heads": 16,
            "num_key_value_heads": 4,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "sliding_window": None,
            "router_aux_loss_coef": 0.02,
            "output_router_logits": True,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        }
    # Qwen3-30B-A3B's widths: 2048 wide, 128 experts of 768, top-8, 32 heads of 128, 4 KV heads
    if family == "qwen3_moe":
        return {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "moe_intermediate_size": 768,
            "num_hidden_layers": layers,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "norm_topk_prob": True,
            "decoder_sparse_step": 1,
            "router_aux_loss_coef": 0.001,
            "output_router_logits": True,
            "max_position_embeddings": 40960,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        }
    raise SystemExit(f"unknown family {family!r}; choose from {', '.join(GPU_FAMILIES)}")


# ----------------------------------------------------------------------------- building both sides


def quiet_transformers():
    import transformers

    transformers.utils.logging.disable_progress_bar()
    return transformers


def make_checkpoint(family: str, config: dict, folder: Path) -> None:
    transformers = quiet_transformers()

    cfg = transformers.AutoConfig.for_model(family, **config, initializer_range=0.02)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).float()
    with torch.no_grad():  # perturb the constant-initialised tensors so that they matter in the parity check
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.normal_(0.0, 0.05)
    model.save_pretrained(folder)


def moezoo_build(checkpoint: Path, work: Path) -> Path:
    """The user's path: `moezoo import-hf checkpoint -o spec.yaml` then `moezoo build spec.yaml`; -> model.py."""
    spec = work / "spec.yaml"
    exe = [sys.executable, "-m", "moezoo.cli"] if importlib.util.find_spec("moezoo") else None
    if exe is None:
        raise SystemExit("moezoo is not installed: pip install -e '.[test]'")
    for argv in (["import-hf", str(checkpoint), "-o", str(spec)], ["build", str(spec), "-o", str(work / "build")]):
        run = subprocess.run(exe + argv, check=False, capture_output=True, text=True, cwd=work)
        if run.returncode != 0:
            raise SystemExit(f"moezoo {' '.join(argv)} failed:\n{run.stderr}")
    (model_py,) = (work / "build").glob("*/model.py")
    return model_py


def import_generated(model_py: Path):
    name = f"moezoo_bench_{model_py.parent.name}_{abs(hash(str(model_py)))}"
    spec = importlib.util.spec_from_file_location(name, model_py)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def load_side(side: str, folder: Path, device: str):
    """One side's model in float32 on `device`, eval mode."""
    if side == "transformers":
        transformers = quiet_transformers()
        model = transformers.AutoModelForCausalLM.from_pretrained(folder / "checkpoint", dtype=torch.float32)
    else:
        model = import_generated(Path((folder / "model_py.txt").read_text())).Model.from_hf(folder / "checkpoint")
    return model.to(device).eval()


def prepare(family: str, config: dict, root: Path) -> Path:
    folder = root / family
    folder.mkdir(parents=True)
    make_checkpoint(family, config, folder / "checkpoint")
    (folder / "model_py.txt").write_text(str(moezoo_build(folder / "checkpoint", folder)))
    return folder


# ----------------------------------------------------------------------------- the work


class Work:
    """Callables for one side: train step, prefill, decode; inputs fixed by a seed so both sides see the same."""

    def __init__(self, side: str, model, args, config: dict, compiled: bool):
        self.side, self.model, self.args, self.vocab = side, model, args, config["vocab_size"]
        self.device = args.device
        self.compiled = compiled
        self.call = model
        if compiled:
            if side == "moezoo":  # as the generated train.py --compile does: the expert dispatch stays eager (its
                # shapes depend on the routing; compiled whole, the DeepSeek-like model recompiled until dynamo's
                # limit and ran 80x slower than eager on CPU)
                for m in model.modules():
                    if type(m).__name__ == "Experts":
                        m.forward = torch.compiler.disable(m.forward)
            self.call = torch.compile(model)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, self.vocab, (args.batch, args.seq), generator=g)
        self.ids = ids.to(self.device)
        labels = torch.full_like(ids, -100)
        labels[:, :-1] = ids[:, 1:]  # moezoo: labels[:, t] follows input_ids[:, t]; transformers shifts itself
        self.labels = labels.to(self.device)
        self.optimizer = None
        self.cache_lengths: list[int] = []

    def autocast(self):
        if self.args.autocast == "bf16":
            return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)
        return torch.autocast(self.device.split(":")[0], enabled=False)

    def train(self) -> None:
        if self.optimizer is None:
            self.model.train()
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5, fused=True)
        with self.autocast():
            if self.side == "transformers":
                loss = self.call(input_ids=self.ids, labels=self.ids, use_cache=False).loss
            else:
                loss = self.call(self.ids, labels=self.labels).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def prefill(self) -> None:
        self.model.eval()
        with torch.no_grad(), self.autocast():
            if self.side == "transformers":
                self.call(input_ids=self.ids, use_cache=False)
            else:
                self.call(self.ids)

    def decode(self, prompt_len: int) -> torch.Tensor:
        self.model.eval()
        prompt = self.ids[: self.args.decode_batch, :prompt_len]
        n = self.args.new_tokens
        with torch.no_grad(), self.autocast():
            if self.side == "transformers":
                out = self.model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
                return out[:, prompt_len:]
            return self.model.generate(prompt, max_new_tokens=n)

    def release_training_state(self) -> None:
        self.optimizer = None
        self.model.zero_grad(set_to_none=True)
        gc.collect()


def moezoo_decode_kind(work: Work, prompt_len: int) -> str:
    """'cached' if Model.generate feeds its forward one new token per step after the prompt, else 'no cache'."""
    embed = next(m for m in work.model.modules() if isinstance(m, torch.nn.Embedding))
    lengths: list[int] = []
    handle = embed.register_forward_pre_hook(lambda m, a: lengths.append(a[0].shape[-1]))
    saved = work.args.new_tokens
    work.args.new_tokens = 4
    try:
        work.decode(prompt_len)
    finally:
        handle.remove()
        work.args.new_tokens = saved
    params = inspect.signature(work.model.generate).parameters
    named = [p for p in params if "cache" in p]
    if len(lengths) > 1 and max(lengths[1:]) == 1:
        return "KV cache" + (f" ({', '.join(named)})" if named else "")
    return "no cache, re-reads the sequence"


# ----------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter  # main() sets it from --clock


def timed(fn, device: str) -> float:
    sync(device)
    start = clock()
    fn()
    sync(device)
    return clock() - start


def interleaved(fa, fb, repeats: int, device: str, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Times fa and fb alternately, the order flipped every round; warm-up calls first."""
    for _ in range(warmup):
        fa()
        fb()
    ta, tb = [], []
    for r in range(repeats):
        if r % 2 == 0:
            ta.append(timed(fa, device))
            tb.append(timed(fb, device))
        else:
            tb.append(timed(fb, device))
            ta.append(timed(fa, device))
    return ta, tb


def fmt_ms(times: list[float]) -> str:
    med = statistics.median(times)
    return f"{1e3 * med:.1f} ({1e3 * min(times):.1f}-{1e3 * max(times):.1f})"


# ----------------------------------------------------------------------------- peak memory (subprocess per case)


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def child_memory(args) -> None:
    """Runs in a subprocess: load one side, run one work once, print the memory it added (MiB) as JSON."""
    torch.set_num_threads(max(args.threads, 1))
    folder, side, work_name = Path(args.child[0]), args.child[1], args.child[2]
    config = json.loads((folder / "checkpoint" / "config.json").read_text())
    work = Work(side, load_side(side, folder, args.device), args, config, compiled=False)
    fn = (
        work.train
        if work_name == "train"
        else work.prefill
        if work_name == "prefill"
        else (lambda: work.decode(int(work_name[6:])))
    )
    if work_name == "train":
        work.model.train()
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        before = rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        fn()
        peak = (rss_kib("VmHWM") - before) * 1024
    print(json.dumps({"peak_bytes": peak}))


def cuda_peak(fn) -> str:
    """MiB that one call of fn allocates on the GPU above what is resident (after warm-up: for a train step the
    gradients and activations, not the AdamW state, which is already allocated)."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return f"{(torch.cuda.max_memory_allocated() - before) / 2**20:.0f}"


def measure_memory(folder: Path, side: str, work_name: str, args) -> str:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(folder),
        side,
        work_name,
        "--device",
        args.device,
        "--autocast",
        args.autocast,
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--new-tokens",
        str(args.new_tokens),
        "--decode-batch",
        str(args.decode_batch),
        "--threads",
        str(args.threads),
    ]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if run.returncode != 0:
        return "failed: " + (run.stderr.strip().splitlines() or ["?"])[-1][:60]
    peak = json.loads(run.stdout.strip().splitlines()[-1])["peak_bytes"]
    return f"{peak / 2**20:.0f}"


# ----------------------------------------------------------------------------- main


def flops_per_token(folder: Path, seq: int) -> float | None:
    """Training FLOPs per token of the built spec, from `moezoo report --json` (DeepSeek convention)."""
    run = subprocess.run(
        [sys.executable, "-m", "moezoo.cli", "report", str(folder / "spec.yaml"), "--json", "--seq-len", str(seq)],
        check=False,
        capture_output=True,
        text=True,
        cwd=folder,
    )
    if run.returncode != 0:
        return None
    return float(json.loads(run.stdout)["flops"]["train_per_token"])


def check_parity(hf, ours, config: dict, device: str) -> float:
    torch.manual_seed(2)
    ids = torch.randint(0, config["vocab_size"], (2, 32), device=device)
    with torch.no_grad():
        a = hf(input_ids=ids, use_cache=False).logits.float()
        b = ours(ids).logits.float()
    diff = (a - b).abs().max().item()
    if diff > 1e-3 * max(1.0, a.abs().max().item()):
        raise SystemExit(f"logits differ by {diff:.2e}: the two models do not compute the same function")
    return diff


def environment(args) -> str:
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU {cpu}, {os.cpu_count()} cores"
    moezoo = "moezoo"
    spec = importlib.util.find_spec("moezoo")
    if spec is not None and spec.origin:  # which code generated the model: the commit of a git checkout, if any
        root = Path(spec.origin).parent.parent
        head = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h"], check=False, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "moezoo", "templates"],
            check=False,
            capture_output=True,
            text=True,
        ).stdout.strip()
        moezoo = f"moezoo {head or '(not a git checkout)'}{' + uncommitted changes' if dirty else ''} ({root})"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{dev}; {moezoo}; torch {torch.__version__}, transformers {transformers.__version__}; threads "
        f"{torch.get_num_threads()}; float32 weights, autocast {args.autocast}; {args.clock} clock; load average at "
        f"start {load:.2f}"
    )


def run_family(family: str, root: Path, args, rows: list[str]) -> None:
    notes: list[str] = []
    config = hf_config(family, args.size, args.layers)
    t0 = time.perf_counter()
    folder = prepare(family, config, root)
    hf = load_side("transformers", folder, args.device)
    ours = load_side("moezoo", folder, args.device)
    n_params = sum(p.numel() for p in ours.parameters())
    assert n_params == sum(p.numel() for p in hf.parameters()), "parameter counts differ"
    diff = check_parity(hf, ours, config, args.device)
    print(
        f"\n## {family}: {n_params / 1e6:.1f}M parameters, max |logit diff| {diff:.1e} "
        f"(built in {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    print(
        "| mode | work | transformers ms (min-max) | moezoo ms (min-max) | ratio tf/moezoo (min-max) | peak MiB tf | peak MiB moezoo |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    fpt = flops_per_token(folder, args.seq) if args.device.startswith("cuda") else None
    tokens = args.batch * args.seq
    for mode in args.modes:
        compiled = mode == "compile"
        t_compile = time.perf_counter()
        a = Work("transformers", hf, args, config, compiled)
        b = Work("moezoo", ours, args, config, compiled)
        works, decode_notes = [], {}
        if "train" in args.works:
            works.append(("train", f"train step B{args.batch}xT{args.seq}", a.train, b.train))
        if "prefill" in args.works:
            works.append(("prefill", f"prefill B{args.batch}xT{args.seq}", a.prefill, b.prefill))
        if "decode" in args.works and not compiled:
            for p in args.prompts:
                kind = moezoo_decode_kind(b, p)
                same = torch.equal(a.decode(p), b.decode(p))
                label = f"decode {args.new_tokens} after {p} (B{args.decode_batch})"
                decode_notes[f"decode{p}"] = f"moezoo generate: {kind}; greedy tokens {'equal' if same else 'DIFFER'}"
                works.append((f"decode{p}", label, lambda p=p, a=a: a.decode(p), lambda p=p, b=b: b.decode(p)))
        for name, label, fa, fb in works:
            if compiled:
                fa(), fb()  # compile both before timing
                label += f" (compiling took {time.perf_counter() - t_compile:.0f} s)"
            ta, tb = interleaved(fa, fb, args.repeats, args.device)
            ratios = [x / y for x, y in zip(ta, tb)]
            ratio = statistics.median(ta) / statistics.median(tb)
            mem_a = mem_b = "-"
            if args.memory and not compiled and args.device.startswith("cuda"):
                mem_a, mem_b = (cuda_peak(f) for f in (fa, fb))  # in process: a child would compete for the GPU
            elif args.memory and not compiled:
                mem_a, mem_b = (measure_memory(folder, side, name, args) for side in ("transformers", "moezoo"))
            if name.startswith("decode"):
                n = args.new_tokens * args.decode_batch
                notes.append(
                    f"{label}: {1e3 * statistics.median(ta) / n:.1f} vs {1e3 * statistics.median(tb) / n:.1f} "
                    f"ms per new token (transformers vs moezoo); {decode_notes[name]}"
                )
            elif fpt is not None and name == "train":
                tps = [tokens / statistics.median(t) for t in (ta, tb)]
                mfu = [fpt * x / (args.peak_tflops * 1e12) for x in tps]
                notes.append(
                    f"{mode} {label}: tokens/s transformers {tps[0]:.0f}, moezoo {tps[1]:.0f}; MFU "
                    f"({fpt / 1e9:.2f} GFLOPs/token from moezoo report, peak {args.peak_tflops:g} TFLOP/s) "
                    f"transformers {100 * mfu[0]:.1f}%, moezoo {100 * mfu[1]:.1f}%"
                )
            row = (
                f"| {mode} | {label} | {fmt_ms(ta)} | {fmt_ms(tb)} | {ratio:.2f}x "
                f"({min(ratios):.2f}-{max(ratios):.2f}) | {mem_a} | {mem_b} |"
            )
            print(row, flush=True)
            rows.append(f"| {family} {row}")
            t_compile = time.perf_counter()
        a.release_training_state()
        b.release_training_state()
    print("".join(f"- {n}\n" for n in notes), end="")
    rows.extend(f"- {family}: {n}" for n in notes)
    del hf, ours
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--families", default=None, help=f"comma list (default {','.join(FAMILIES)}; --gpu adds deepseek_v2)"
    )
    parser.add_argument(
        "--size",
        choices=["tiny", "small", "medium", "gpu"],
        default=None,
        help="tiny: 64 wide, 2 layers (smoke); small (default): 256 wide, 4 layers, 32 experts "
        "(8 for Mixtral), vocab 4096; medium: 512 wide, 6 layers, 64 experts, vocab 16384; gpu: real "
        "widths and expert counts (DeepSeek-V2-Lite, Mixtral at 2048 wide, Qwen3-30B-A3B), 3 layers (Qwen3: 2)",
    )
    parser.add_argument("--layers", type=int, default=None, help="override the number of layers")
    parser.add_argument("--batch", type=int, default=None, help="B for train and prefill (default 4)")
    parser.add_argument("--seq", type=int, default=None, help="T for train and prefill (default 256; --gpu 2048)")
    parser.add_argument("--prompts", default="32,256", help="decode prompt lengths, comma list (default 32,256)")
    parser.add_argument("--new-tokens", type=int, default=64, help="greedy tokens to decode (default 64)")
    parser.add_argument("--decode-batch", type=int, default=1)
    parser.add_argument("--works", default="train,prefill,decode")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per work after one warm-up (default 7)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default 1 on CPU; 0: torch's default)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time both sides under torch.compile (train, prefill)"
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default=None,
        help="cpu: this process's CPU time (default with one CPU thread: other jobs on a shared machine then barely "
        "move the figures); wall: elapsed time (default otherwise, and the only sensible clock with threads > 1)",
    )
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    parser.add_argument("--device", default=None)
    parser.add_argument("--autocast", choices=["none", "bf16"], default=None)
    parser.add_argument(
        "--gpu", action="store_true", help="--device cuda --autocast bf16 --size gpu --seq 2048 --threads 0"
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="for MFU on CUDA (H100 SXM dense bf16: 989)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    gpu = args.gpu
    args.device = args.device or ("cuda" if gpu else "cpu")
    args.autocast = args.autocast or ("bf16" if gpu else "none")
    args.size = args.size or ("gpu" if gpu else "small")
    args.batch = args.batch or 4
    args.seq = args.seq or (2048 if gpu else 256)
    args.threads = (0 if gpu else 1) if args.threads is None else args.threads
    args.prompts = [int(p) for p in args.prompts.split(",") if p]
    args.works = args.works.split(",")
    args.modes = ["eager", "compile"] if args.compile else ["eager"]
    args.clock = args.clock or ("cpu" if args.threads == 1 and args.device == "cpu" else "wall")
    global clock
    clock = CLOCK[args.clock]
    if args.child:
        child_memory(args)
        return
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    families = args.families.split(",") if args.families else list(GPU_FAMILIES if gpu else FAMILIES)
    print(f"# transformers vs moezoo ({' '.join(sys.argv[1:]) or 'defaults'})\n{environment(args)}")
    print(
        "Times in ms: median (min-max) of the interleaved rounds; ratio = transformers / moezoo median, "
        "> 1 means moezoo is faster; peak MiB = memory the work adds to the loaded model (eager)."
    )
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            run_family(family, Path(tmp), args, rows)
    print(
        "\n## all families\n| family | mode | work | transformers ms | moezoo ms | ratio | peak MiB tf | peak MiB moezoo |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(r for r in rows if r.startswith("|")))
    print("\n".join(r for r in rows if r.startswith("-")))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
