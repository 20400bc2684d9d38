"""Wall time of a 6-run tiny grid (`balance-lab sweep paper_main`, 3 seeds) with --jobs 1 vs --jobs 2.

Each variant trains into a fresh SQLite store in a temporary directory; the command is the one a
user types. STEPS per run keeps the benchmark short; the ratio is what matters.

    .venv/bin/python benchmarks/sweep_jobs.py [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep_wall(jobs: int, steps: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-sweep-j{jobs}-"))
    command = [
        str(Path(sys.executable).with_name("balance-lab")),
        "sweep",
        "paper_main",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "--jobs",
        str(jobs),
        "--tracking-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=folder, check=True, capture_output=True, env={**os.environ, "COLUMNS": "200"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    args = parser.parse_args()
    print(f"balance-lab sweep paper_main (6 tiny runs, {args.steps} steps each), {os.cpu_count()} cores\n")
    walls = {jobs: sweep_wall(jobs, args.steps) for jobs in (1, 2)}
    print(f"{'--jobs':>6}{'wall s':>9}{'s / run':>9}")
    for jobs, wall in walls.items():
        print(f"{jobs:>6}{wall:>9.1f}{wall / 6:>9.1f}")
    print(f"\njobs 2 / jobs 1 wall = {walls[2] / walls[1]:.2f}  (speed-up {walls[1] / walls[2]:.2f}x)")


if __name__ == "__main__":
    main()
