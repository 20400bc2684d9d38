"""Two `balance-lab run` started 5 s apart on one machine: tokens/s of each when they share the
cores (training/core_share.py) against each taking every core (the behaviour before: each run in a
registry of its own, so neither sees the other), and one run alone for reference. Prints a table.

    python benchmarks/two_runs.py [--steps 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BALANCE_LAB = str(Path(sys.executable).with_name("balance-lab"))
SETUP = ["trainer.log_every_n_steps=5", "trainer.enable_progress_bar=false", "data.val_sequences=12"]


def start(steps: int, store: str, registry: str, name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {
        "MLFLOW_TRACKING_URI": store,
        "BALANCE_LAB_TRAININGS_DIR": registry,
    }
    args = [
        BALANCE_LAB,
        "run",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        f"logger.run_name={name}",
        *SETUP,
    ]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def tokens_per_sec(store: str, name: str) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string=f"attributes.run_name = '{name}'"
    )
    return runs[0].data.metrics["train/tokens_per_sec"]


def pair(steps: int, store: str, shared: bool, tag: str) -> tuple[float, float]:
    registries = [tempfile.mkdtemp()] * 2 if shared else [tempfile.mkdtemp(), tempfile.mkdtemp()]
    first = start(steps, store, registries[0], f"{tag}-first")
    time.sleep(5)
    second = start(steps, store, registries[1], f"{tag}-second")
    for process in (first, second):
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(err[-2000:])
    return tokens_per_sec(store, f"{tag}-first"), tokens_per_sec(store, f"{tag}-second")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    steps = parser.parse_args().steps
    store = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    alone = start(steps, store, tempfile.mkdtemp(), "alone")
    alone.communicate()
    base = tokens_per_sec(store, "alone")
    unshared = pair(steps, store, shared=False, tag="unshared")
    shared = pair(steps, store, shared=True, tag="shared")
    print(f"\ntiny preset, {steps} steps, {os.cpu_count()} cores; tokens/s (train/tokens_per_sec)")
    print(f"{'':<34}{'first':>10}{'second':>10}{'sum':>10}{'sum / alone':>13}")
    print(f"{'one run alone':<34}{base:>10,.0f}{'':>10}{base:>10,.0f}{1:>13.2f}")
    for label, (a, b) in (("two runs, each every core", unshared), ("two runs, sharing the cores", shared)):
        print(f"{label:<34}{a:>10,.0f}{b:>10,.0f}{a + b:>10,.0f}{(a + b) / base:>13.2f}")


if __name__ == "__main__":
    main()
