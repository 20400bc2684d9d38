"""Running a grid: the parent run, the Hydra multirun process, a live display, the summary.

The experiment (named after the sweep) and the parent run are created here, once, before any job
starts: several processes creating them at once race in SQLite. Jobs run in `python -m
balance_lab.train -m` through Hydra's launcher (basic, joblib for --jobs N, submitit for SLURM),
each recording its run nested under the parent. This process only watches the store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from balance_lab.store import tracking
from balance_lab.store.patience import store_is_away, wait_for_store
from balance_lab.sweeping import stopping
from balance_lab.sweeping.grid import Grid

POLL_SECONDS = 2.0


@dataclass
class Outcome:
    point_index: int
    run_name: str
    status: str  # FINISHED | FAILED | KILLED | SKIPPED | MISSING
    run_id: str | None
    metrics: dict[str, float]
    reason: str = ""


def launcher_overrides(jobs: int, user_overrides: list[str]) -> list[str]:
    """joblib with N workers for --jobs N > 1, each with cores / N torch threads, unless a launcher is chosen."""
    if any(o.startswith("hydra/launcher=") for o in user_overrides) or jobs <= 1:
        return []
    threads = max(1, (os.cpu_count() or 1) // jobs)
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}", f"threads={threads}"]


# Hydra launcher config name -> (plugin module, PyPI package).
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
}


def check_launcher(overrides: list[str]) -> None:
    """Fail before anything is recorded when the chosen launcher is unknown or its plugin is not installed."""
    import importlib.util

    from balance_lab.errors import ConfigError

    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra/launcher=")]
    for name in chosen:
        if name == "basic":
            continue
        if name not in LAUNCHER_PLUGINS:
            raise ConfigError(
                f"unknown launcher hydra/launcher={name}; choose one of basic, {', '.join(LAUNCHER_PLUGINS)}"
            )
        module, package = LAUNCHER_PLUGINS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"hydra/launcher={name} needs the '{package}' package: pip install {package}")


def open_parent(client, grid: Grid, command: str) -> str:
    """The sweep's parent run, owned by this process like a training run (host, pid, heartbeat): a
    sweep killed with -9 leaves it RUNNING, and `balance-lab runs --stale` must be able to tell."""
    from balance_lab.store.liveness import owner_tags

    experiment = tracking.experiment_id(client, grid.name)
    parent = client.create_run(
        experiment,
        run_name=f"{grid.name}-sweep",
        tags={
            tracking.TAG_SWEEP: grid.name,
            tracking.TAG_GIT_SHA: tracking.git_sha(),
            tracking.TAG_ROLE: tracking.ROLE_SWEEP_PARENT,
            tracking.TAG_COMMAND: command[:5000],
            **owner_tags(),
        },
    )
    run_id = parent.info.run_id
    params = {
        "sweep.name": grid.name,
        "sweep.runs": len(grid.points),
        "sweep.keys": ",".join(grid.swept_keys),
        "sweep.fixed_overrides": " ".join(grid.fixed) or "-",
    }
    params |= {f"sweep.values.{k}": ",".join(v) for k, v in grid.dimensions.items()}
    tracking.TrackedRun(client, run_id, "").log_params(params)
    tracking.TrackedRun(client, run_id, "").log_json(grid.definition(), "grid.json")
    return run_id


def job_command(grid: Grid, parent_id: str, rerun: bool, sweep_dir: Path, extra: list[str]) -> list[str]:
    keys = ",".join(grid.swept_keys)
    return [
        sys.executable,
        "-m",
        "balance_lab.train",
        "-m",
        *grid.hydra_overrides(),
        *extra,
        f"logger.experiment_name={grid.name}",
        f"logger.sweep={grid.name}",
        f"logger.parent_run_id={parent_id}",
        f"logger.swept_keys=[{keys}]",
        f"logger.skip_finished={str(not rerun).lower()}",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def children(client, grid: Grid, parent_id: str) -> dict[str, object]:
    experiment = client.get_experiment_by_name(grid.name)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{tracking.TAG_PARENT}` = '{parent_id}'", max_results=10_000
    )
    return {r.data.tags.get(tracking.TAG_CONFIG_HASH): r for r in runs}


def outcomes(client, grid: Grid, parent_id: str, rerun: bool) -> list[Outcome]:
    by_hash = children(client, grid, parent_id)
    result = []
    for point in grid.points:
        run = by_hash.get(point.config_hash)
        if run is not None:
            reason = run.data.tags.get(tracking.TAG_STATUS_REASON, "")
            result.append(
                Outcome(point.index, point.run_name, run.info.status, run.info.run_id, dict(run.data.metrics), reason)
            )
        elif point.finished_run_id and not rerun:
            run = client.get_run(point.finished_run_id)
            result.append(
                Outcome(point.index, point.run_name, "SKIPPED", point.finished_run_id, dict(run.data.metrics))
            )
        else:
            result.append(
                Outcome(point.index, point.run_name, "MISSING", None, {}, "no run was recorded (see the sweep log)")
            )
    return result


def run_sweep(
    client, grid: Grid, command: str, jobs: int, rerun: bool, extra: list[str], sweep_dir: Path, tracking_uri: str
) -> tuple[str, list[Outcome], Path]:
    """Launch the grid under a new parent run and watch it; returns the parent run id, every point's
    outcome and the log path."""
    parent_id = open_parent(client, grid, command)
    with closing_parent(client, parent_id) as outcome:
        results, log_path = run_points(client, grid, parent_id, jobs, rerun, extra, sweep_dir, tracking_uri)
        outcome["status"] = settle(client, parent_id, results)
    return parent_id, results, log_path


@contextlib.contextmanager
def closing_parent(client, parent_id: str):
    """The parent run ends with the status the block sets (outcome["status"]), FAILED on an error, or
    KILLED with the signal's reason; a store that is away is waited for."""
    outcome = {"status": "FAILED"}
    try:
        yield outcome
    except KeyboardInterrupt as exc:
        close_parent(client, parent_id, "KILLED", stop_reason(exc))
        raise
    except BaseException:
        close_parent(client, parent_id, "FAILED")
        raise
    close_parent(client, parent_id, outcome["status"])


def close_parent(client, parent_id: str, status: str, reason: str | None = None) -> None:
    """The parent's final status (and reason), waiting for a store that is away."""

    def close() -> None:
        if reason:
            client.set_tag(parent_id, tracking.TAG_STATUS_REASON, reason)
        client.set_terminated(parent_id, status)

    wait_for_store(close, "closing the sweep's parent run")


def stop_reason(exc: KeyboardInterrupt) -> str:
    name = signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
    return (
        f"stopped by {name}: the running runs saved checkpoints and are KILLED; the same command continues "
        "them and runs the rest"
    )


def settle(client, parent_id: str, results: list[Outcome]) -> str:
    """FINISHED when every run finished (or was skipped as finished before), else FAILED with the count."""
    failed = [o for o in results if o.status not in ("FINISHED", "SKIPPED")]
    if failed:
        reason = f"{len(failed)} of {len(results)} runs did not finish"
        wait_for_store(lambda: client.set_tag(parent_id, tracking.TAG_STATUS_REASON, reason), "closing the parent")
    return "FAILED" if failed else "FINISHED"


def run_points(
    client,
    grid: Grid,
    parent_id: str,
    jobs: int,
    rerun: bool,
    extra: list[str],
    sweep_dir: Path,
    tracking_uri: str,
    title: str = "",
) -> tuple[list[Outcome], Path]:
    """Train the grid's points as runs nested under `parent_id` (one Hydra multirun process) and watch
    them with a progress bar; returns every point's outcome and the log path."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from balance_lab.console import console
    from balance_lab.store.liveness import Heartbeat

    heartbeat = Heartbeat(client, parent_id)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log_path = sweep_dir / "sweep.log"
    to_skip = 0 if rerun else sum(p.finished_run_id is not None for p in grid.points)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PYTHONUNBUFFERED": "1",
        stopping.STOP_ENV: str(sweep_dir / stopping.STOP_FILE),
    }
    if to_skip == len(grid.points):
        process = None  # everything already finished: nothing to launch
    else:
        cmd = job_command(grid, parent_id, rerun, sweep_dir, [*launcher_overrides(jobs, extra), *extra])
        with open(log_path, "w") as log:
            log.write(" ".join(cmd) + "\n\n")
            log.flush()
            # a session of its own: a signal reaches this command only, which stops the runs once (stopping.py)
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    columns = [
        TextColumn(f"[bold]sweep {grid.name}{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    ]
    mine = {p.config_hash for p in grid.points}  # a parent may hold earlier batches' runs too
    previous = stopping.stop_on_sigterm()
    try:
        with Progress(*columns, console=console(stderr=True), transient=False) as progress:
            task = progress.add_task("runs", total=len(grid.points), detail="")
            counts, away = _count({}), ""
            while True:
                running = process is not None and process.poll() is None
                try:
                    counts, away = _count({h: r for h, r in children(client, grid, parent_id).items() if h in mine}), ""
                except Exception as exc:  # noqa: BLE001 - the runs keep training; what they log waits for the store
                    if not store_is_away(exc):
                        raise
                    away = " · [yellow]the store does not answer[/]"
                done = counts["FINISHED"] + counts["FAILED"] + counts["KILLED"] + to_skip
                progress.update(
                    task,
                    completed=done,
                    detail=(
                        f"[green]{counts['FINISHED']} finished[/] · {counts['RUNNING']} running · "
                        f"[red]{counts['FAILED'] + counts['KILLED']} failed[/] · {to_skip} skipped{away}"
                    ),
                )
                if not running:
                    break
                heartbeat.beat()
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the runs stop at their next step, none starts
        stopping.mark_stopping(sweep_dir, getattr(exc, "signum", signal.SIGINT))
        if process is not None:
            left = stopping.wait_for_processes(
                process,
                lambda n: console(stderr=True).print(
                    f"stopping: {n} run(s) finish their step and save a checkpoint ..."
                ),
            )
            if left:
                console(stderr=True).print(
                    f"[red]killed {len(left)} process(es) still running after {stopping.WAIT_SECONDS:.0f} s: {left}[/]"
                )
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return wait_for_store(lambda: outcomes(client, grid, parent_id, rerun), "reading the runs' outcomes"), log_path


def _count(runs: dict[str, object]) -> dict[str, int]:
    counts = {"FINISHED": 0, "FAILED": 0, "KILLED": 0, "RUNNING": 0, "SCHEDULED": 0}
    for run in runs.values():
        counts[run.info.status] = counts.get(run.info.status, 0) + 1
    return counts
