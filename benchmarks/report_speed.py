"""How long `balance-lab report` takes over a large sweep: 500 runs synthesised through MlflowClient.

Each synthetic run looks like a real tiny run: the full flattened config as params, every contract
metric, a 30-point train/maxvio_batch history, loads/val_loads.json and config.yaml. The report is
then built REPEATS times (load + tables, then plots + files) and the median of each phase printed.

    .venv/bin/python benchmarks/report_speed.py [--runs 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthesise(uri: str, n_runs: int, seeds: int = 10) -> None:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from balance_lab.config.compose import compose_config
    from balance_lab.store import tracking

    tracking.quiet_mlflow_logs()
    client = MlflowClient(uri)
    experiment = client.create_experiment("bench")
    parent = client.create_run(
        experiment,
        run_name="bench-sweep",
        tags={"balance_lab.role": "sweep_parent", "balance_lab.command": "synthetic"},
    ).info.run_id
    rng = np.random.default_rng(0)
    methods = [("aux_loss", {"balance.alpha": a}) for a in (1e-4, 1e-3, 1e-2)] + [
        ("loss_free", {"balance.update_rate": u}) for u in (1e-4, 1e-3, 1e-2)
    ]
    per_method = -(-n_runs // (seeds * len(methods)))  # ceil: enough configurations for n_runs
    configs = [(m, extra, k) for m, extra in methods for k in range(per_method)]
    now = int(time.time() * 1000)
    made = 0
    for index, (method, extra, variant) in enumerate(configs):
        cfg = compose_config(
            [f"balance={method}", *(f"{k}={v}" for k, v in extra.items()), f"model.top_k={2 + variant % 4}"]
        )
        base = tracking.flatten(OmegaConf.to_container(cfg, resolve=True))
        for seed in range(seeds):
            if made == n_runs:
                return
            name = f"{method}-{index}-k{2 + variant % 4}-tiny-s{seed}"
            run_id = client.create_run(
                experiment,
                run_name=name,
                tags={
                    "mlflow.parentRunId": parent,
                    "balance_lab.sweep": "bench",
                    "balance_lab.config_hash": f"{index}-{seed}",
                    "sweep.balance": method,
                    "sweep.seed": str(seed),
                },
            ).info.run_id
            params = [Param(k, str(v)) for k, v in {**base, "seed": seed}.items()]
            metrics = [
                Metric(k, float(v), now, 300)
                for k, v in {
                    "val/ppl": 6 + rng.normal(0, 0.1),
                    "val/bpb": 2.6 + rng.normal(0, 0.01),
                    "val/loss": 1.8,
                    "val/maxvio_global": abs(rng.normal(0.5, 0.2)),
                    "train/maxvio_batch_mean": abs(rng.normal(0.6, 0.2)),
                    "train/maxvio_compute_batch_mean": abs(rng.normal(0.7, 0.2)),
                    "train/tokens_per_sec": 11000 + rng.normal(0, 300),
                    "val/top_expert_freq/code": 0.5,
                    "val/top_expert_freq/prose": 0.5,
                    "val/top_expert_freq/math": 0.6,
                }.items()
            ]
            metrics += [
                Metric("train/maxvio_batch", float(abs(rng.normal(1 / (1 + s / 50), 0.1))), now, s * 10)
                for s in range(30)
            ]
            for i in range(0, len(params), 100):
                client.log_batch(run_id, params=params[i : i + 100])
            client.log_batch(run_id, metrics=metrics)
            counts = rng.integers(500, 1500, size=(3, 16))
            loads = {
                "layers": counts.tolist(),
                "layer_ids": [1, 2, 3],
                "domains": {d: (counts // 3).tolist() for d in ("code", "prose", "math")},
                "tokens": {d: int(counts.sum() // 12) for d in ("code", "prose", "math")},
            }
            client.log_text(run_id, json.dumps(loads), "loads/val_loads.json")
            client.log_text(run_id, OmegaConf.to_yaml(cfg), "config.yaml")
            client.set_terminated(run_id, "FINISHED")
            made += 1
    client.set_terminated(parent, "FINISHED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from balance_lab.report import make

    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    started = time.perf_counter()
    synthesise(uri, args.runs)
    print(f"synthesised {args.runs} runs in {time.perf_counter() - started:.1f} s ({uri})")
    phases: dict[str, list[float]] = {"load + tables": [], "plots + files": [], "total": [], "CLI end to end": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        report = make.make_report(uri, "bench")
        t1 = time.perf_counter()
        make.write_report(report, root / "reports")
        t2 = time.perf_counter()
        phases["load + tables"].append(t1 - t0)
        phases["plots + files"].append(t2 - t1)
        phases["total"].append(t2 - t0)
    cli = [
        str(Path(sys.executable).with_name("balance-lab")),
        "report",
        "bench",
        "--tracking-uri",
        uri,
        "--out",
        str(root / "cli-reports"),
    ]
    for _ in range(args.repeats):  # a fresh process: imports (mlflow, pandas, matplotlib) and the terminal table too
        t0 = time.perf_counter()
        subprocess.run(cli, check=True, capture_output=True)
        phases["CLI end to end"].append(time.perf_counter() - t0)
    print(
        f"\nreport over {len(report.runs.finished)} runs, {len(report.summary)} configurations "
        f"(median of {args.repeats}; target: total < 5 s)"
    )
    print(f"{'phase':<16}{'median s':>10}{'min s':>10}{'max s':>10}")
    for phase, times in phases.items():
        print(f"{phase:<16}{statistics.median(times):>10.2f}{min(times):>10.2f}{max(times):>10.2f}")
    for phase in ("total", "CLI end to end"):
        median = statistics.median(phases[phase])
        print(f"{phase} / target = {median / 5.0:.2f}  ({'met' if median < 5.0 else 'MISSED'})")


if __name__ == "__main__":
    main()
