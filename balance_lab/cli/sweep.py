"""`balance-lab sweep`: expand a grid, launch it as one MLflow sweep and watch it."""

from __future__ import annotations

from typing import List, Optional

import typer

from balance_lab.cli.app import PASSTHROUGH, OverridesArg, app, fail, prepare_data
from balance_lab.config.paths import available_sweeps

DEFAULT_MAX_SEEDS = 12  # --until-resolved's seed budget per configuration (docs/evidence.md)


@app.command(context_settings=PASSTHROUGH)
def sweep(
    name: str = typer.Argument(
        ..., help=f"A sweep file of sweeps/ (or of $BALANCE_LAB_SWEEPS_DIR): {', '.join(available_sweeps())}."
    ),
    overrides: Optional[List[str]] = OverridesArg,
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1, help="Runs at a time on this machine (Hydra's joblib launcher)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the expanded grid and exit; nothing is trained or recorded."
    ),
    rerun: bool = typer.Option(
        False, "--rerun", help="Train again the runs that already FINISHED with the same config."
    ),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."
    ),
    until_resolved: Optional[str] = typer.Option(
        None,
        "--until-resolved",
        metavar="METRIC",
        help="After the grid's seeds, add --step seeds at a time until "
        "METRIC's paired interval against --baseline excludes zero for every configuration, or --max-seeds are spent "
        "(a group-sequential rule: the overall false-positive rate stays at 5%). E.g. val/ppl, val/maxvio_global.",
    ),
    max_seeds: Optional[int] = typer.Option(
        None, "--max-seeds", min=2, help="With --until-resolved: the seed budget per configuration [default: 12]."
    ),
    step: Optional[int] = typer.Option(
        None,
        "--step",
        min=1,
        help="With --until-resolved: seeds added per look (default: as many as the grid's seeds).",
    ),
    baseline: Optional[str] = typer.Option(
        None,
        "--baseline",
        help="With --until-resolved: the configuration the "
        "others are compared with (its swept values, or a unique part; default: the first).",
    ),
) -> None:
    """Run an ablation grid (method x rate x rule x ... x seed) as one MLflow sweep.

    The grid is the sweep file's hydra.sweeper.params plus any sweeping override given here
    (key=a,b,c); other overrides apply to every run. One experiment per sweep name, one parent
    run per invocation, every run nested under it. Runs that already FINISHED with the same
    config are skipped (--rerun trains them again) and runs stopped by Ctrl-C or SIGTERM continue
    from their checkpoints, so an interrupted sweep is continued by running the same command again.
    Examples:

        balance-lab sweep paper_main --dry-run
        balance-lab sweep update_rate model=small seeds=[0,1] --jobs 2
        balance-lab sweep paper_main trainer=gpu hydra/launcher=submitit_slurm \\
            hydra.launcher.partition=gpu
        balance-lab sweep gating hydra/launcher=submitit_local

    With --until-resolved METRIC the seeds are spent in looks: the grid's seeds, then --step more
    at a time (the next integers above the largest), up to --max-seeds. After each look the paired
    differences of METRIC (same seed, configuration minus baseline) get a group-sequential 95%
    interval; the sweep stops once every interval excludes zero or the budget is spent. The plan is
    declared before the first run and recorded in the parent run with every look
    (sequential.json); `balance-lab report` prints the sequential intervals. Changing --max-seeds
    or --step for a comparison already begun on the same seeds is refused. Example:

        balance-lab sweep paper_main "seeds=[100,101,102]" --until-resolved val/ppl \
            --max-seeds 12 --jobs 2

    Exit status: 0 when every run finished, 1 when any failed, 2 on bad input.
    """
    from datetime import datetime
    from pathlib import Path

    overrides = list(overrides or [])
    bad_options = [o for o in overrides if o.startswith("-")]
    if bad_options:
        fail(f"unknown option {bad_options[0]!r} for sweep; see balance-lab sweep --help (overrides are key=value)")
    plain = [o for o in overrides if not o.startswith(("hydra/", "hydra."))]
    extra = [o for o in overrides if o.startswith(("hydra/", "hydra."))]
    if until_resolved is not None and max_seeds is None:
        max_seeds = DEFAULT_MAX_SEEDS
    grid, sequential_plan = _checked_grid(name, plain, until_resolved, max_seeds, step, baseline)
    uri = _reachable(tracking_uri)
    _check_launcher(jobs, extra)
    if dry_run:
        _print_dry_run(grid, uri, rerun, until_resolved, sequential_plan)
        return
    prepare_data([point.source for point in grid.points])
    client = _mark_finished(grid, uri, create_store=True)
    command = _command_line(name, overrides, jobs, until_resolved, max_seeds, step, baseline)
    sweep_dir = (Path("multirun") / name / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    try:
        if until_resolved is not None:
            launch = {"jobs": jobs, "rerun": rerun, "extra": extra, "tracking_uri": uri}
            _run_sequential(client, grid, name, plain, until_resolved, sequential_plan, command, launch, sweep_dir)
            return
        from balance_lab.sweeping.launch import run_sweep

        parent_id, results, log_path = run_sweep(client, grid, command, jobs, rerun, extra, sweep_dir, uri)
    except KeyboardInterrupt as exc:
        typer.echo(
            "sweep stopped: the running runs saved checkpoints and are marked KILLED; "
            f"run the same command again to continue them ({command})",
            err=True,
        )
        raise typer.Exit(128 + getattr(exc, "signum", 2)) from None
    from balance_lab.sweeping.display import print_outcome

    if print_outcome(grid, results, parent_id, log_path):
        raise typer.Exit(1)


def _checked_grid(name, plain, until_resolved, max_seeds, step, baseline):
    """The expanded grid and, with --until-resolved, (plan, baseline); a bad value fails in one line."""
    from balance_lab.errors import ConfigError
    from balance_lab.sweeping.grid import expand

    try:
        grid = expand(name, plain)
        if until_resolved is None:
            if step is not None or baseline is not None or max_seeds is not None:
                raise ConfigError("--max-seeds, --step and --baseline go with --until-resolved METRIC")
            return grid, None
        from balance_lab.sweeping import sequential

        sequential.check_metric(until_resolved, grid)
        return grid, (sequential.plan_seeds(grid, max_seeds, step), sequential.choose_baseline(grid, baseline))
    except ConfigError as exc:
        fail(str(exc))


def _reachable(tracking_uri: str | None) -> str:
    from balance_lab.errors import ConfigError
    from balance_lab.store import tracking
    from balance_lab.store.reachable import check_reachable

    uri = tracking.resolve_tracking_uri(tracking_uri)
    try:
        check_reachable(uri)
    except ConfigError as exc:
        fail(str(exc))
    return uri


def _print_dry_run(grid, uri: str, rerun: bool, until_resolved: str | None, sequential_plan) -> None:
    from balance_lab.console import console as make_console
    from balance_lab.sweeping.display import grid_table

    _mark_finished(grid, uri, create_store=False)
    make_console().print(grid_table(grid, rerun))
    if until_resolved is not None:
        plan, chosen = sequential_plan
        make_console().print(
            f"until {until_resolved} is resolved against {chosen}: looks at "
            f"{', '.join(map(str, plan.looks))} seeds, seeds {', '.join(map(str, plan.seeds))}"
        )


def _check_launcher(jobs: int, extra: list[str]) -> None:
    from balance_lab.errors import ConfigError
    from balance_lab.sweeping.launch import check_launcher, launcher_overrides

    try:
        check_launcher([*launcher_overrides(jobs, extra), *extra])
    except ConfigError as exc:
        fail(str(exc))


def _command_line(name, overrides, jobs, until_resolved, max_seeds, step, baseline) -> str:
    """The command as the parent run records it (what continues the sweep)."""
    import shlex

    options = ["--jobs", str(jobs)] if jobs > 1 else []
    if until_resolved is not None:
        options += ["--until-resolved", until_resolved, "--max-seeds", str(max_seeds)]
        options += (["--step", str(step)] if step else []) + (["--baseline", baseline] if baseline else [])
    return "balance-lab sweep " + shlex.join([name, *overrides, *options])


def _run_sequential(client, grid, name, plain, metric, sequential_plan, command, launch, sweep_dir) -> None:
    """Looks of seeds until `metric` is resolved (sweeping/sequential.py); exit 1 if a run did not finish."""
    from balance_lab.errors import ConfigError
    from balance_lab.sweeping import sequential
    from balance_lab.sweeping.grid import expand

    def grid_for(seeds):
        kept = [o for o in plain if o.partition("=")[0].lstrip("+~") not in ("seed", "seeds")]
        later = expand(name, [*kept, f"seed={','.join(map(str, seeds))}"])
        _mark_finished(later, launch["tracking_uri"], create_store=True)
        return later

    plan, chosen = sequential_plan
    try:
        sequential.check_plan_unchanged(client, grid, metric, chosen, plan)
    except ConfigError as exc:
        fail(str(exc))
    parent_id, results, incomplete = sequential.run_until_resolved(
        client, grid, grid_for, metric, plan, chosen, command, launch, sweep_dir
    )
    failed = sum(o.status not in ("FINISHED", "SKIPPED") for o in results)
    if failed:
        typer.echo(f"{failed} runs did not finish (parent run {parent_id})", err=True)
    elif incomplete:
        typer.echo(f"the sweep stopped on an incomplete look: the reason above (parent run {parent_id})", err=True)
    if failed or incomplete:
        raise typer.Exit(1)


def _mark_finished(grid, uri: str, create_store: bool):
    """Look up, for each point, a FINISHED run with the same config (what a re-run skips)."""
    from balance_lab.store import tracking

    db = tracking.sqlite_file(uri)
    if db is not None and not create_store and not db.exists():
        return None  # a dry run never creates a store
    client = tracking.client(uri)
    for point in grid.points:
        run = tracking.find_finished(client, grid.name, point.config_hash)
        point.finished_run_id = run.info.run_id if run else None
    return client
