"""`balance-lab report`: a sweep's comparison tables, paired differences, published numbers and plots."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from balance_lab.cli.app import app, existing_store, fail

REPORT_FORMATS = ("table", "md", "csv", "html")


@app.command()
def report(
    sweeps: Optional[List[str]] = typer.Argument(
        None, help="Sweep (experiment) names; default: every experiment in the store.", show_default=False
    ),
    output_format: str = typer.Option(
        "table", "--format", "-f", help="What to print: table (rich), md, csv (summary) or html."
    ),
    out: Path = typer.Option(Path("reports"), "--out", "-o", help="Reports go to `OUT/SWEEP/`."),
    metric: Optional[List[str]] = typer.Option(
        None,
        "--metric",
        "-m",
        help="Extra metric column, e.g. val/loss or train/aux_loss:min (':min'/':max' marks the best). Repeatable.",
    ),
    run_filter: str = typer.Option(
        "", "--run-filter", help="MLflow filter on the runs, e.g. \"params.model.name = 'tiny'\"."
    ),
    baseline: Optional[str] = typer.Option(
        None,
        "--baseline",
        help="Configuration the others are compared with, seed by "
        "seed (a label or a unique part of one); default: the first.",
    ),
    write: bool = typer.Option(
        True, "--write/--no-write", help="Write `OUT/SWEEP/` and log the plots to the sweep's parent run."
    ),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."
    ),
) -> None:
    """Compare the configurations of a sweep: tables, paired differences, the paper's numbers, plots.

    One row per configuration (runs that differ only in the seed), mean ± std over seeds, the
    best value per column in bold; only FINISHED runs are averaged, the others are listed below.
    Writes `OUT/SWEEP/report.md`, `report.html` (self-contained), `summary.csv`, `runs.csv` and
    `plots/*.png`, and logs the plots to the sweep's latest parent run. Examples:

        balance-lab report paper_main
        balance-lab report update_rate --format md --metric val/loss:min
        balance-lab report lbl_scope --baseline micro \\
            --run-filter "params.model.name = 'small'"
    """
    from balance_lab.console import console as make_console
    from balance_lab.errors import ConfigError

    if output_format not in REPORT_FORMATS:
        fail(f"unknown --format {output_format!r}; choose one of {', '.join(REPORT_FORMATS)}")
    uri = existing_store(tracking_uri)
    from balance_lab.report import html, make, render

    names = list(sweeps or []) or _experiments_with_runs(uri)
    if not names:
        fail(f"the store {uri} holds no run yet")
    if write and out.exists() and not out.is_dir():
        fail(f"--out {out}: a file; reports go to OUT/SWEEP/, give a folder")
    try:
        make.check_arguments(uri, names, list(metric or []), run_filter)  # every name before the first report
    except ConfigError as exc:
        fail(str(exc))
    console = make_console()
    for name in names:
        try:
            result = make.make_report(uri, name, list(metric or []), run_filter, baseline)
        except ConfigError as exc:
            fail(str(exc))
        if write:
            make.write_report(result, out)
        if output_format == "table":
            render.terminal(result, console)
            if write:
                console.print(f"[dim]wrote {result.files['md']} (+ report.html, summary.csv, runs.csv, plots/)[/]")
        elif output_format == "csv":
            typer.echo(result.summary.to_csv(index=False), nl=False)
        elif output_format == "md":
            typer.echo(render.markdown(result), nl=False)
        else:
            typer.echo(html.html(render.markdown(result), out / name, f"balance-lab report: {name}"), nl=False)


def _experiments_with_runs(uri: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    from balance_lab.store import tracking

    tracking.quiet_mlflow_logs()
    client = MlflowClient(uri)
    return [e.name for e in client.search_experiments() if client.search_runs([e.experiment_id], max_results=1)]
