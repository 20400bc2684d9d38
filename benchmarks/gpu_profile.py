"""Where the time goes on a GPU (benchmarks/gpu.py's `profile` and `syncs` parts): torch.profiler
tables of the MoE layer and of a training step, cProfile of balance-lab's loop, and the call sites
where the loop waits for the GPU."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from moe_layer import build as build_layer_variants  # noqa: E402
from moe_layer import step  # noqa: E402
from train_step import bare_loop, compose, lightning_loop  # noqa: E402

PROFILED_SHAPE = (16384, 1024, 64, 6, 512)  # T, D, E, K, H: paper_1b's MoE layer (gpu.py's GPU_SHAPES[1])


def _show(prof, title: str, steps: int) -> None:
    from torch.autograd import DeviceType

    events = prof.key_averages()
    cuda = torch.cuda.is_available()
    # as the table's own "Self CUDA time total": kernel rows only (op rows repeat their kernels' time)
    gpu_ms = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA) / 1e3 / steps
    cpu_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    print(f"\n{title}: per step, GPU kernels {gpu_ms:.2f} ms, CPU (profiled ops) {cpu_ms:.2f} ms")
    print(
        events.table(
            sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=14, max_name_column_width=48
        )
    )


def _step_hook(fn):
    """A Lightning callback that calls `fn` after each training batch."""
    import lightning as L

    class StepHook(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            fn()

    return StepHook()


def part_profile(device: str, preset: str, store: str, trainer: list[str], smoke: bool) -> None:
    """torch.profiler's view of the MoE layer and of one training step, bare and through balance-lab."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    T, D, E, K, H = (256, 64, 8, 2, 32) if smoke else PROFILED_SHAPE
    layer, x = build_layer_variants(T, D, E, K, H)["moe"]
    layer, x = layer.to(device), x.to(device)

    def run():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device != "cpu"):
            step(layer, x)

    for _ in range(3):
        run()
    with profile(activities=activities) as prof:
        for _ in range(5):
            run()
        torch.cuda.synchronize() if torch.cuda.is_available() else None
    _show(prof, f"MoE layer T={T} D={D} E={E} K={K} H={H}, forward+backward", 5)

    cfg = compose(preset, "loss_free", 20, store, *trainer)
    for name in ("bare loop", "balance-lab loop"):
        prof = profile(activities=activities, schedule=schedule(wait=8, warmup=2, active=5))
        prof.start()
        bare_loop(cfg, device, on_step=prof.step) if name == "bare loop" else lightning_loop(
            cfg, [_step_hook(prof.step)]
        )
        prof.stop()
        _show(prof, f"{preset}, {name}", 5)
    _python_profile(compose(preset, "loss_free", 40, store, *trainer))


def _python_profile(cfg, steps: int = 20) -> None:
    """Where the host's time per step goes in balance-lab's loop: cProfile over the last `steps`
    steps (after compilation and warm-up, before teardown), the top functions (torch's, Lightning's,
    balance-lab's) by their own time and by cumulative time, in ms per step. cProfile slows Python
    down; read the shares."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    state = {"batch": 0, "started": 0.0}

    def on_batch():
        state["batch"] += 1
        if state["batch"] == cfg.trainer.max_steps - steps:
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            state["started"] = time.perf_counter()
            profiler.enable()
        elif state["batch"] == cfg.trainer.max_steps:  # before Lightning's teardown (the model back to the CPU)
            profiler.disable()
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            state["seconds"] = time.perf_counter() - state["started"]

    lightning_loop(cfg, [_step_hook(on_batch)])
    wall_ms = state["seconds"] * 1e3 / steps
    stats = pstats.Stats(profiler)
    rows = [(func, cc, tt, ct) for func, (cc, nc, tt, ct, callers) in stats.stats.items()]
    print(f"\nhost time per step of balance-lab's loop under cProfile ({steps} steps): {wall_ms:.2f} ms wall")
    for title, key, n in (("own time", 2, 20), ("cumulative time", 3, 40)):
        print(f"  top functions by {title} (own ms, cumulative ms, calls; per step):")
        for func, cc, tt, ct in sorted(rows, key=lambda r: -r[key])[:n]:
            file, line, fn = func
            where = file.split("site-packages/")[-1].split("balance_lab/")[-1] if "/" in file else file
            print(f"  {tt * 1e3 / steps:>8.3f} {ct * 1e3 / steps:>8.3f} {cc / steps:>6.1f}  {where}:{line}({fn})")


def part_syncs(preset: str, store: str, trainer: list[str]) -> None:
    """Where balance-lab's loop makes the CPU wait for the GPU (torch.cuda's sync debug mode, 3 steps)."""
    import collections
    import warnings

    if not torch.cuda.is_available():
        print("\nsyncs: needs CUDA")
        return
    seen: collections.Counter = collections.Counter()
    state = {"batch": 0, "ctx": None}

    def on_batch():
        state["batch"] += 1
        if state["batch"] == 10:
            state["ctx"] = warnings.catch_warnings(record=True)
            state["records"] = state["ctx"].__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        elif state["batch"] == 13:
            torch.cuda.set_sync_debug_mode("default")
            state["ctx"].__exit__(None, None, None)
            for w in state["records"]:
                if "synchroniz" in str(w.message):
                    seen[f"{w.filename}:{w.lineno}"] += 1

    lightning_loop(compose(preset, "loss_free", 16, store, *trainer), [_step_hook(on_batch)])
    print(f"\nhost-device synchronisations in 3 steps of balance-lab's loop ({preset}), by call site:")
    for site, count in seen.most_common(20):
        print(f"{count:>4}  {site}")
