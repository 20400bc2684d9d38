"""`balance-lab runs`: the latest runs, the stale ones, and replaying what a store never took."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from balance_lab.cli.app import app, existing_store, fail

DEFAULT_OLDER_THAN = 10.0  # --stale: minutes without a heartbeat that count as gone (runs of other hosts)


@app.command()
def runs(
    stale: bool = typer.Option(
        False,
        "--stale",
        help="Find RUNNING runs whose process is gone (kill -9, OOM, lost node) "
        "and mark them KILLED, so they can be resumed.",
    ),
    older_than: Optional[float] = typer.Option(
        None,
        "--older-than",
        min=0,
        help="With --stale, for runs owned by another host: minutes without a heartbeat that count as gone "
        "[default: 10].",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --stale, list what would be marked; change nothing."),
    sync: Optional[Path] = typer.Option(
        None,
        "--sync",
        help="Send what a run kept while its store was away "
        "(metrics, tags, artifacts: the unsent-RUN.jsonl file it named).",
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many of the latest runs to list."),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."
    ),
) -> None:
    """List the latest runs; find and mark the ones whose process died.

    A run killed with `kill -9` (or by the OOM killer, or on a node that vanished) stays RUNNING
    in MLflow: nothing was left to mark it. `--stale` finds them (the owning process is gone on
    this host, or no heartbeat for `--older-than` minutes elsewhere) and marks them KILLED with
    the evidence; `balance-lab run --resume RUN_ID` then continues each from its last checkpoint.
    Examples:

        balance-lab runs
        balance-lab runs --stale --dry-run
        balance-lab runs --sync outputs/2026-11-25/10-00-00/unsent-3f2a.jsonl
    """
    from datetime import datetime

    from rich.table import Table

    from balance_lab.console import console as make_console
    from balance_lab.store import tracking

    if sync is not None and stale:
        fail("--sync and --stale are two jobs; run them one at a time")
    if not stale and (dry_run or older_than is not None):
        fail(f"{'--dry-run' if dry_run else '--older-than'} goes with --stale")
    uri = existing_store(tracking_uri)
    from balance_lab.store import runs as listing

    client, console = tracking.client(uri), make_console()
    if sync is not None:
        from balance_lab.store.outbox import replay

        if not sync.is_file():
            fail(f"--sync {sync}: no such file")
        try:
            sent, run_ids = replay(client, sync)
        except ValueError as exc:
            fail(str(exc))
        console.print(f"sent {sent} records to {len(run_ids)} run(s) in {uri}")
        return
    if stale:
        found = listing.stale_runs(client, DEFAULT_OLDER_THAN if older_than is None else older_than)
        for row in found:
            if not dry_run:
                listing.mark_killed(client, row)
            console.print(
                f"{'would mark' if dry_run else 'marked'} KILLED: {row.name} ({row.run_id}, {row.experiment}): "
                f"{row.note}; {row.next_step}",
                soft_wrap=True,
            )  # one line per run: the command copies whole
        console.print(f"{len(found)} stale run(s)" + (" (nothing changed: --dry-run)" if dry_run and found else ""))
        return
    table = Table(header_style="bold")
    for column in ("run", "experiment", "status", "started", "val ppl", "run id", "note"):
        table.add_column(column, justify="right" if column == "val ppl" else "left")
    for row in listing.latest_runs(client, limit):
        style = {"FAILED": "red", "KILLED": "yellow", "RUNNING": "cyan"}.get(row.status, "")
        table.add_row(
            row.name,
            row.experiment,
            f"[{style}]{row.status}[/]" if style else row.status,
            datetime.fromtimestamp(row.started).strftime("%Y-%m-%d %H:%M"),
            f"{row.val_ppl:.3f}" if row.val_ppl is not None else "-",
            row.run_id,
            row.note[:80],
        )
    console.print(table)
