"""Rich tables of a grid (dry run) and of its outcome (summary)."""

from __future__ import annotations

from rich.table import Table

from balance_lab.console import console as make_console
from balance_lab.sweeping.grid import Grid
from balance_lab.sweeping.launch import Outcome

_STATUS_STYLE = {"FINISHED": "green", "SKIPPED": "cyan", "FAILED": "red", "KILLED": "red", "MISSING": "red"}


def grid_table(grid: Grid, rerun: bool) -> Table:
    table = Table(title=f"sweep {grid.name}: {len(grid.points)} runs", header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("run name")
    for key in grid.swept_keys:
        table.add_column(key)
    table.add_column("plan")
    for p in grid.points:
        plan = "run" if rerun or not p.finished_run_id else f"[cyan]skip[/] (finished: {p.finished_run_id[:8]})"
        table.add_row(str(p.index), p.run_name, *(p.values[k] for k in grid.swept_keys), plan)
    return table


def _fmt(metrics: dict[str, float], key: str, digits: int) -> str:
    return f"{metrics[key]:.{digits}f}" if key in metrics else "-"


def summary_table(grid: Grid, results: list[Outcome]) -> Table:
    table = Table(title=f"sweep {grid.name}", header_style="bold")
    for column, justify in (
        ("#", "right"),
        ("run name", "left"),
        ("status", "left"),
        ("val ppl", "right"),
        ("MaxVio global", "right"),
        ("MaxVio batch", "right"),
        ("reason", "left"),
    ):
        table.add_column(column, justify=justify)
    for o in results:
        style = _STATUS_STYLE.get(o.status, "")
        table.add_row(
            str(o.point_index),
            o.run_name,
            f"[{style}]{o.status}[/]",
            _fmt(o.metrics, "val/ppl", 3),
            _fmt(o.metrics, "val/maxvio_global", 3),
            _fmt(o.metrics, "train/maxvio_batch", 3),
            o.reason,
        )
    return table


def print_outcome(grid: Grid, results: list[Outcome], parent_id: str, log_path) -> int:
    """Print the summary; returns the number of runs that did not finish."""
    console = make_console()
    console.print(summary_table(grid, results))
    counts = {s: sum(o.status == s for o in results) for s in ("FINISHED", "SKIPPED")}
    failed = len(results) - counts["FINISHED"] - counts["SKIPPED"]
    colour = "red" if failed else "green"
    console.print(
        f"[{colour}]{counts['FINISHED']} finished, {failed} failed, {counts['SKIPPED']} skipped[/] · "
        f"experiment [bold]{grid.name}[/], parent run {parent_id} · log {log_path}"
    )
    if any(o.status == "MISSING" for o in results) and log_path.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-12:]
        console.print("[red]end of the sweep log:[/]")
        console.print("\n".join(tail), markup=False, highlight=False)
    return failed
