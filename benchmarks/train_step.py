"""Training throughput: balance-lab's Lightning + MLflow loop vs a bare PyTorch loop, and the cost
of each balancing method.

Part 1, per preset (tiny, small), in one process per preset: the same model, data and optimizer
trained N steps (i) by a bare loop (forward, loss, backward, clip, AdamW + schedule, the
balancer's step-end update; nothing logged) and (ii) through `build_trainer` + Lightning + the
MLflow logger + every metric of `balance-lab run`; alternated REPEATS times, median tokens/s,
the first WARMUP steps not timed. Peak RSS of that process is printed too.
Part 2: tiny through the full loop with each `balance` option, tokens/s relative to `none`.
Part 3: the cost of the routing records (diagnostics): tiny loss-free with the per-step load history
off, on (the default), and with a routing trace every 10 steps, alternated, relative to off.

    .venv/bin/python benchmarks/train_step.py [--quick] [--only presets methods diagnostics]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

WARMUP = 5
METHODS = [
    "none",
    "aux_loss",
    "seq_aux_loss",
    "global_aux_loss",
    "z_loss",
    "loss_free",
    "loss_free_raw",
    "loss_free_mult",
    "loss_free_seq_aux",
    "quantile",
    "quantile_ema",
    "loss_free_momentum",
    "aux_loss_orthogonal",
    "forced",
]
DIAGNOSTICS = {  # name -> overrides
    "records off": ["diagnostics.load_history=false"],
    "load history (default)": [],
    "+ trace every 10 steps": ["diagnostics.trace_every=10"],
}


def compose(preset: str, balance: str, steps: int, store: str, *overrides: str):
    from balance_lab.config.compose import compose_config

    return compose_config(
        [
            f"model={preset}",
            f"balance={balance}",
            f"trainer.max_steps={steps}",
            "+trainer.limit_val_batches=0",
            "trainer.enable_progress_bar=false",
            f"logger.tracking_uri={store}",
            "logger.experiment_name=bench",
            *overrides,
        ]
    )


def tokens_per_step(cfg) -> int:
    return cfg.data.batch_size * cfg.model.seq_len


def bare_loop(cfg, device: str = "cpu", on_step=None, losses: list | None = None) -> float:
    """tokens/s of a plain PyTorch loop over the same model and data (on CUDA: bf16 autocast, as
    `trainer=gpu`'s bf16-mixed). `losses`, when given, receives each step's loss (read at the end:
    no host sync per step)."""
    import contextlib

    import lightning as L
    import torch

    from balance_lab.training.build import build
    from balance_lab.training.lit_module import _nll

    L.seed_everything(cfg.seed, verbose=False)
    built = build(cfg)
    built.datamodule.setup("fit")
    module, model = built.module, built.module.model.to(device)
    optim = module.configure_optimizers()
    optimizer, schedule = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    model.train()
    cuda = device.startswith("cuda")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    batches = iter(built.datamodule.train_dataloader())
    step_losses = []
    for step in range(cfg.trainer.max_steps):
        if step == WARMUP:
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
        tokens = next(batches)["tokens"]
        tokens = tokens.pin_memory().to(device, non_blocking=True) if cuda else tokens  # as the datamodule does
        with autocast():
            out = model(tokens[:, :-1])
            loss = _nll(out.logits_BSV, tokens[:, 1:]) + out.aux_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
        for layer, counts_E in zip(model.moe_layers, out.counts_LBE.sum(dim=1)):
            layer.balancer.step_end(counts_E)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if losses is not None:
            step_losses.append(loss.detach())
        if on_step is not None:
            on_step()
    if cuda:
        torch.cuda.synchronize()
    if losses is not None:
        losses.extend(torch.stack(step_losses).tolist())
    return (cfg.trainer.max_steps - WARMUP) * tokens_per_step(cfg) / (time.perf_counter() - started)


def lightning_loop(cfg, callbacks=()) -> float:
    """tokens/s of what `balance-lab run` trains with: Lightning, the MLflow logger, every metric."""
    import lightning as L

    from balance_lab.store import tracking
    from balance_lab.training.build import build, build_trainer
    from balance_lab.training.callbacks import Throughput

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == WARMUP:
                self.started = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            self.seconds = time.perf_counter() - self.started

    L.seed_everything(cfg.seed, verbose=False)
    built = build(cfg)
    clock = Clock()
    with tracking.open_run(cfg.logger.tracking_uri, "bench", "bench") as run, tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(cfg, tracking.lightning_logger(run), [Throughput(), clock, *callbacks], out)
        trainer.fit(built.module, datamodule=built.datamodule)
    return (cfg.trainer.max_steps - WARMUP) * tokens_per_step(cfg) / clock.seconds


def one_preset(preset: str, steps: int, repeats: int) -> dict:
    store = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    cfg = compose(preset, "loss_free", steps, store)
    result = {"bare": [], "lightning": []}
    for _ in range(repeats):  # alternated, so drifts in machine load hit both
        result["bare"].append(bare_loop(cfg))
        result["lightning"].append(lightning_loop(cfg))
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def methods(steps: int, repeats: int) -> dict:
    store = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    result = {m: [] for m in METHODS}
    for _ in range(repeats):
        for method in METHODS:
            result[method].append(lightning_loop(compose("tiny", method, steps, store)))
    return result


def diagnostics(steps: int, repeats: int) -> dict:
    store = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    result = {name: [] for name in DIAGNOSTICS}
    for _ in range(repeats):
        for name, overrides in DIAGNOSTICS.items():
            result[name].append(lightning_loop(compose("tiny", "loss_free", steps, store, *overrides)))
    return result


def child(*args: str) -> dict:
    """Run a part in a fresh process (its own peak RSS, no state carried between parts)."""
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument(
        "--only", nargs="+", choices=["presets", "methods", "diagnostics"], help="run these parts only (default: all)"
    )
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)  # internal: run one part, print JSON
    args = parser.parse_args()
    if args.part:
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        from balance_lab.training.experiment import quiet_framework_logs

        quiet_framework_logs()
        kind, *rest = args.part
        if kind == "preset":
            data = one_preset(rest[0], int(rest[1]), int(rest[2]))
        else:
            data = (methods if kind == "methods" else diagnostics)(int(rest[0]), int(rest[1]))
        print(json.dumps(data))
        return
    parts = args.only or ["presets", "methods", "diagnostics"]
    repeats = 2 if args.quick else 3
    steps = {"tiny": 25 if args.quick else 45, "small": 12 if args.quick else 20}
    import torch

    print(
        f"training throughput, {torch.get_num_threads()} threads, median of {repeats} alternated runs, "
        f"first {WARMUP} steps untimed\n"
    )
    if "presets" in parts:
        presets(steps, repeats)
    if "methods" in parts:
        relative_table("methods", "method (tiny, full loop)", METHODS, steps["tiny"], repeats)
        print("vs none: tokens/s relative to `none` (target >= 0.95)\n")
    if "diagnostics" in parts:  # a 2% target: more repeats than the methods' 5%
        relative_table("diagnostics", "routing records (tiny)", list(DIAGNOSTICS), steps["tiny"], 2 * repeats + 1)
        print("vs records off: tokens/s relative to no routing records (target for the default: >= 0.98)")


def presets(steps: dict, repeats: int) -> None:
    print(f"{'preset':<7}{'steps':>6}{'bare tok/s':>12}{'balance-lab tok/s':>19}{'overhead':>10}{'peak RSS MB':>13}")
    for preset in ("tiny", "small"):
        r = child("--part", "preset", preset, str(steps[preset]), str(repeats))
        bare, full = statistics.median(r["bare"]), statistics.median(r["lightning"])
        overhead = bare / full - 1
        print(f"{preset:<7}{steps[preset]:>6}{bare:>12,.0f}{full:>19,.0f}{overhead:>10.1%}{r['max_rss_mb']:>13,.0f}")
    print("overhead = bare tokens/s / balance-lab tokens/s - 1 (target <= 10%)\n")


def relative_table(part: str, title: str, names: list[str], steps: int, repeats: int) -> None:
    """Medians of each option's tokens/s, relative to the first option's, measured alternated in one process."""
    r = child("--part", part, str(steps), str(repeats))
    base = statistics.median(r[names[0]])
    print(f"{title:<26}{'tok/s':>10}{'vs ' + names[0].split(' (')[0]:>16}")
    for name in names:
        value = statistics.median(r[name])
        print(f"{name:<26}{value:>10,.0f}{value / base:>16.3f}")


if __name__ == "__main__":
    main()
