"""GPU figures in bf16 on one CUDA device: the MoE layer against a plain matmul of the same FLOPs,
and training throughput with MFU. Not part of the tests (CI has no GPU); run on a GPU machine:

    python benchmarks/gpu.py [--quick] [--smoke]

  peak     an 8192^3 bf16 matmul: what this card really does (beside its datasheet dense bf16 peak)
  moe      forward+backward of balance-lab's MoE layer at GPU shapes under bf16 autocast (router in
           fp32, sort-based dispatch, torch._grouped_mm experts) vs a dense SwiGLU FFN of the same
           active FLOPs vs one matmul of the same FLOPs; median of CUDA-synchronised repeats
  train    a bare PyTorch loop (bf16 autocast, AdamW, the balancer's step-end update, built-in data)
           per preset: tokens/s, MFU = tokens/s x training FLOPs per token / datasheet peak, peak memory
  overhead balance-lab's own loop (Lightning trainer=gpu bf16-mixed + MLflow logger + every metric)
           vs the bare loop on `base`, alternated
  methods  every balancing method through balance-lab's loop on `base`, relative to `none`
  compile  (not run by default) the MoE layer eager vs torch.compile'd (model.compile) at the base and
           paper_1b shapes, and whether two compiled forward+backward passes give the same bits
  profile  (not run by default) torch.profiler tables of the MoE layer and of a training step,
           bare and through balance-lab: where the time goes; then cProfile of balance-lab's
           loop: where the host's time per step goes
  syncs    (not run by default) the call sites where balance-lab's loop waits for the GPU

--variants runs the train part once per override set (';' between sets, spaces inside one, '' = the
preset as configured), e.g. --variants "; model.activation_checkpointing=false"; --overrides adds
overrides to every part (e.g. model.compile=false for the eager model).
--smoke runs the same code on the CPU at toy sizes (to check the script before a GPU lease).
Each part catches its own errors, so one failure (say an out-of-memory preset) leaves the rest.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_profile import part_profile, part_syncs  # noqa: E402
from moe_layer import build as build_layer_variants  # noqa: E402
from moe_layer import moe_flops, step  # noqa: E402
from train_step import METHODS, bare_loop, compose, lightning_loop, tokens_per_step  # noqa: E402

DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core FLOP/s (SXM)
GPU_SHAPES = [  # T, D, E, K, H
    (16384, 512, 32, 6, 192),  # the base preset's MoE layer, 16 x 1024 tokens
    (16384, 1024, 64, 6, 512),  # paper_1b's MoE layer (64 routed, 6 active, width 512), 8 x 2048 tokens
    (16384, 1280, 64, 6, 1024),  # paper_3b's
    (32768, 2048, 16, 2, 4096),  # coarse experts (Mixtral-like)
]
# Each preset at its own micro-batch per GPU (paper_3b's 12 sequences fit one H200 at 49 GiB with
# its activation checkpointing).
PRESETS = {"base": [], "paper_1b": ["data.batch_size=8"], "paper_3b": []}


def device_peak() -> tuple[str, float | None]:
    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name()
    return name, next((flops for key, flops in DATASHEET_BF16.items() if key in name), None)


def cuda_time(fn, warmup: int, repeats: int) -> float:
    """Median seconds of fn(), each call synchronised (CPU: wall clock)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def part_peak(device: str, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = cuda_time(lambda: a @ b, 3, 10)
    flops = 2 * n**3 / seconds
    print(f"bf16 matmul {n}^3: {flops / 1e12:,.0f} TFLOP/s")
    return flops


def part_moe(device: str, shapes, peak: float | None, warmup: int, repeats: int) -> None:
    print(f"\nMoE layer forward+backward, bf16 autocast, median of {repeats}")
    header = (
        f"{'T':>6} {'D':>5} {'E':>3} {'K':>2} {'H':>5} | {'moe ms':>7} {'dense ms':>8} {'matmul ms':>9} | "
        f"{'moe TF/s':>8} {'mm TF/s':>8} | {'moe/matmul':>10} {'moe/dense':>9} {'moe MFU':>8}"
    )
    print(header)
    print("-" * len(header))
    for T, D, E, K, H in shapes:
        try:
            variants = {
                name: (m.to(device), x.to(device))
                for name, (m, x) in build_layer_variants(T, D, E, K, H).items()
                if name != "naive"
            }  # the mask loop: see moe_layer.py on the CPU

            def run(module, x):
                with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device != "cpu"):
                    step(module, x)

            ms = {
                name: 1e3 * cuda_time(lambda m=m, x=x: run(m, x), warmup, repeats) for name, (m, x) in variants.items()
            }
            tf = {name: moe_flops(T, D, K, H) / (t / 1e3) / 1e12 for name, t in ms.items()}
            mfu = f"{tf['moe'] * 1e12 / peak:>8.1%}" if peak else f"{'-':>8}"
            print(
                f"{T:>6} {D:>5} {E:>3} {K:>2} {H:>5} | {ms['moe']:>7.2f} {ms['dense']:>8.2f} {ms['matmul']:>9.2f} | "
                f"{tf['moe']:>8.1f} {tf['matmul']:>8.1f} | {tf['moe'] / tf['matmul']:>10.2f} "
                f"{ms['dense'] / ms['moe']:>9.2f} {mfu}"
            )
        except Exception as exc:  # noqa: BLE001 - one shape's failure (say OOM) leaves the others
            print(f"{T:>6} {D:>5} {E:>3} {K:>2} {H:>5} | failed: {type(exc).__name__}: {str(exc)[:160]}")
        finally:
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    print(
        "moe/matmul: fraction of the plain matmul's TFLOP/s; moe/dense: dense time / MoE time; MFU of the "
        "routed experts' FLOPs against the datasheet peak"
    )


def part_compile(device: str, shapes, warmup: int, repeats: int) -> None:
    """The MoE layer as `model.compile` runs it (torch.compile, static shapes) against eager."""
    print(f"\nMoE layer forward+backward, eager vs compiled, bf16 autocast, median of {repeats}")
    print(
        f"{'T':>6} {'D':>5} {'E':>3} {'K':>2} {'H':>5} | {'eager ms':>8} {'compiled ms':>11} {'speed-up':>8} | "
        f"{'matmul ms':>9} {'eager/mm':>8} {'compiled/mm':>11} | {'compile s':>9} {'same bits':>9}"
    )
    for T, D, E, K, H in shapes:
        try:
            variants = build_layer_variants(T, D, E, K, H)
            (layer, x), (matmul, _) = variants["moe"], variants["matmul"]
            layer, matmul, x = layer.to(device), matmul.to(device), x.to(device)
            compiled = copy.deepcopy(layer)
            compiled.compile(dynamic=False)

            def run(module, x=x):
                with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device != "cpu"):
                    step(module, x)

            started = time.perf_counter()
            run(compiled)
            compile_s = time.perf_counter() - started
            ms = {
                name: 1e3 * cuda_time(lambda m=m: run(m), warmup, repeats)
                for name, m in (("eager", layer), ("compiled", compiled), ("matmul", matmul))
            }
            same = _same_bits(compiled, x, device)
            print(
                f"{T:>6} {D:>5} {E:>3} {K:>2} {H:>5} | {ms['eager']:>8.2f} {ms['compiled']:>11.2f} "
                f"{ms['eager'] / ms['compiled']:>7.2f}x | {ms['matmul']:>9.2f} {ms['matmul'] / ms['eager']:>8.2f} "
                f"{ms['matmul'] / ms['compiled']:>11.2f} | {compile_s:>9.1f} {str(same):>9}"
            )
        except Exception as exc:  # noqa: BLE001
            print(f"{T:>6} {D:>5} {E:>3} {K:>2} {H:>5} | failed: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    print(
        "eager/mm, compiled/mm: fraction of a plain matmul's throughput at the same FLOPs (target >= 0.8); "
        "same bits: two compiled forward+backward passes give identical outputs and gradients"
    )


def _same_bits(module, x: torch.Tensor, device: str) -> bool:
    results = []
    for _ in range(2):
        x_in = x.detach().clone().requires_grad_(True)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device != "cpu"):
            out = module(x_in).y_BSD
        out.float().pow(2).mean().backward()
        results.append([out.detach().clone(), x_in.grad.clone()] + [p.grad.clone() for p in module.parameters()])
        module.zero_grad(set_to_none=True)
    return all(torch.equal(a, b) for a, b in zip(*results))


def flops_per_token(cfg) -> int:
    from balance_lab.model import ModelArgs, count_params, train_flops_per_token

    args = ModelArgs.from_config(cfg.model)
    return train_flops_per_token(args, count_params(args))


def part_train(
    device: str, presets: dict, steps: int, peak: float | None, store: str, variants: list[list[str]], extra: list[str]
) -> None:
    print(
        f"\nbare training loop (bf16 autocast, AdamW, loss_free), {steps} steps, the first 5 untimed "
        "(they and the build, 'build+5 s', hold any compilation)"
    )
    print(
        f"{'preset':<9}{'tokens/step':>12}{'GFLOP/token':>12}{'tokens/s':>11}{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}"
        f"{'build+5 s':>10}  losses (steps 0, 1/4, 1/2, 3/4, last) | variant"
    )
    for preset, overrides in presets.items():
        for variant in variants:
            try:
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                cfg = compose(preset, "loss_free", steps, store, *overrides, *extra, *variant)
                losses: list[float] = []
                started = time.perf_counter()
                tps = bare_loop(cfg, device, losses=losses)
                first = time.perf_counter() - started - (steps - 5) * tokens_per_step(cfg) / tps
                fpt = flops_per_token(cfg)
                mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
                mfu = f"{tps * fpt / peak:>7.1%}" if peak else f"{'-':>7}"
                curve = " ".join(f"{losses[i]:.4f}" for i in (0, steps // 4, steps // 2, 3 * steps // 4, steps - 1))
                curve += (
                    f" (mean of the last {max(1, steps // 10)}: {statistics.mean(losses[-max(1, steps // 10) :]):.4f})"
                )
                tflops = tps * fpt / 1e12
                print(
                    f"{preset:<9}{tokens_per_step(cfg):>12,}{fpt / 1e9:>12.2f}{tps:>11,.0f}{tflops:>9.1f}{mfu}"
                    f"{mem:>10.1f}{first:>10.1f}  {curve} | {' '.join(variant) or 'as configured'}"
                )
            except Exception as exc:  # noqa: BLE001
                what = " ".join(variant) or "as configured"
                print(f"{preset:<9} failed ({what}): {type(exc).__name__}: {str(exc)[:300]}")
            finally:
                torch.cuda.empty_cache() if torch.cuda.is_available() else None


def part_overhead(device: str, preset: str, steps: int, repeats: int, store: str, trainer: list[str]) -> None:
    print(f"\nbalance-lab's loop vs the bare loop, {preset}, {steps} steps, median of {repeats} alternated")
    cfg = compose(preset, "loss_free", steps, store, *trainer)
    bare, full = [], []
    for _ in range(repeats):
        bare.append(bare_loop(cfg, device))
        full.append(lightning_loop(cfg))
    b, f = statistics.median(bare), statistics.median(full)
    print(f"bare {b:,.0f} tok/s, balance-lab {f:,.0f} tok/s, overhead {b / f - 1:.1%} (target <= 10%)")


def part_methods(preset: str, steps: int, repeats: int, store: str, trainer: list[str], methods: list[str]) -> None:
    title = f"method ({preset}, full loop)"
    print(f"\n{title:<28}{'tok/s':>10}{'vs none':>9}   (median of {repeats}, order rotated)")
    results: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(repeats):  # each repeat starts one method later: drifts in clock or load hit all alike
        for method in methods[r % len(methods) :] + methods[: r % len(methods)]:
            try:
                results[method].append(lightning_loop(compose(preset, method, steps, store, *trainer)))
            except Exception as exc:  # noqa: BLE001
                print(f"{method:<28} failed: {type(exc).__name__}: {str(exc)[:200]}")
    base = statistics.median(results["none"]) if results["none"] else float("nan")
    for method, values in results.items():
        if values:
            print(f"{method:<28}{statistics.median(values):>10,.0f}{statistics.median(values) / base:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: check the script itself")
    parser.add_argument(
        "--parts",
        default="peak,moe,train,overhead,methods",
        help="comma-separated parts to run (peak, moe, train, overhead, methods, compile, profile, syncs)",
    )
    parser.add_argument("--presets", default=",".join(PRESETS), help="presets of the train part")
    parser.add_argument("--variants", default="", help="';'-separated override sets for the train part")
    parser.add_argument("--overrides", default="", help="space-separated overrides for every part")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="balancing methods of the methods part (`none` first: the others are relative to it)",
    )
    parser.add_argument("--steps", type=int, default=0, help="steps of the train part (default 30, --quick 15)")
    args = parser.parse_args()
    from balance_lab.training.experiment import quiet_framework_logs

    quiet_framework_logs()
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device here (use --smoke to check the script on the CPU)")
    name, peak = device_peak()
    print(
        f"{name}, torch {torch.__version__}, datasheet dense bf16 peak "
        f"{f'{peak / 1e12:,.0f} TFLOP/s' if peak else 'unknown'}, {time.strftime('%Y-%m-%d')}"
    )
    store = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    shapes = [(256, 64, 8, 2, 32)] if args.smoke else GPU_SHAPES
    presets = {"tiny": []} if args.smoke else {name: PRESETS[name] for name in args.presets.split(",")}
    steps, repeats = (8, 1) if args.smoke else ((15, 2) if args.quick else (30, 3))
    trainer = ([] if args.smoke else ["trainer=gpu"]) + args.overrides.split()
    variants = [v.split() for v in args.variants.split(";")]
    parts = {
        "peak": lambda: part_peak(device, 256 if args.smoke else 8192),
        "moe": lambda: part_moe(device, shapes, peak, 2 if args.smoke else 5, 3 if args.smoke else 20),
        "train": lambda: part_train(device, presets, args.steps or steps, peak, store, variants, trainer),
        "compile": lambda: part_compile(device, shapes[:2], 2 if args.smoke else 5, 3 if args.smoke else 20),
        "overhead": lambda: part_overhead(device, "tiny" if args.smoke else "base", steps, repeats, store, trainer),
        "methods": lambda: part_methods(
            "tiny" if args.smoke else "base", steps, repeats, store, trainer, args.methods.split(",")
        ),
        "profile": lambda: part_profile(device, "tiny" if args.smoke else "base", store, trainer, args.smoke),
        "syncs": lambda: part_syncs("tiny" if args.smoke else "base", store, trainer),
    }
    for part in args.parts.split(","):
        try:
            parts[part]()
        except Exception:  # noqa: BLE001 - print it and go on to the next part
            print(f"\npart {part} failed:\n{traceback.format_exc()[-3000:]}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
