"""What `balance-lab run` prints when a run ends: its headline numbers and any routing warning."""

from __future__ import annotations

from balance_lab.training.experiment import RunResult


def print_summary(result: RunResult) -> None:
    from rich.table import Table

    from balance_lab.console import console as make_console

    console = make_console()
    if result.skipped:
        console.print(f"[yellow]skipped[/]: {result.name} already FINISHED with the same config as run {result.run_id}")
        return
    m = result.metrics
    table = Table(title=f"balance-lab run: {result.name}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("val perplexity", f"{m.get('val/ppl', float('nan')):.3f}"),
        ("val bits per byte", f"{m.get('val/bpb', float('nan')):.4f}"),
        ("MaxVio global (val)", f"{m.get('val/maxvio_global', float('nan')):.4f}"),
        ("MaxVio batch (last step)", f"{m.get('train/maxvio_batch', float('nan')):.4f}"),
        ("train tokens/s", f"{result.tokens_per_sec:,.0f}"),
        ("wall time", f"{result.wall_seconds:.1f} s"),
        ("MLflow run id", result.run_id),
        ("MLflow store", result.tracking_uri),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning: {warning}[/]")
