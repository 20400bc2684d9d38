"""`balance-lab runs`: the store's latest runs at a glance, and the RUNNING runs nobody owns any more."""

from __future__ import annotations

import time
from dataclasses import dataclass

from balance_lab.store.liveness import owner_of
from balance_lab.store.tracking import ROLE_SWEEP_PARENT, TAG_COMMAND, TAG_ROLE, TAG_STATUS_REASON, TAG_WARNING


@dataclass
class RunRow:
    run_id: str
    name: str
    experiment: str
    status: str
    started: float  # unix seconds
    val_ppl: float | None
    note: str  # owner of a RUNNING run, else the reason or routing warning
    sweep_command: str = ""  # set on a sweep invocation's parent run: the command that continues it

    @property
    def next_step(self) -> str:
        """What a user does to continue this run once it is marked KILLED."""
        if self.sweep_command:
            return f"run the same sweep again to continue its stopped runs: {self.sweep_command}"
        return f"resume: balance-lab run --resume {self.run_id}"


def _experiments(client) -> dict[str, str]:
    return {e.experiment_id: e.name for e in client.search_experiments()}


def latest_runs(client, limit: int = 20) -> list[RunRow]:
    experiments = _experiments(client)
    if not experiments:
        return []
    runs = client.search_runs(list(experiments), max_results=limit, order_by=["attributes.start_time DESC"])
    rows = []
    for run in runs:
        tags = run.data.tags
        note = (
            owner_of(tags).detail
            if run.info.status == "RUNNING"
            else (tags.get(TAG_STATUS_REASON) or tags.get(TAG_WARNING) or "")
        )
        rows.append(
            RunRow(
                run.info.run_id,
                run.info.run_name,
                experiments[run.info.experiment_id],
                run.info.status,
                run.info.start_time / 1000,
                run.data.metrics.get("val/ppl"),
                note,
            )
        )
    return rows


def stale_runs(client, older_than_minutes: float) -> list[RunRow]:
    """RUNNING runs whose owning process is gone; each row's note is the evidence."""
    experiments = _experiments(client)
    if not experiments:
        return []
    found = []
    for run in client.search_runs(list(experiments), filter_string="attributes.status = 'RUNNING'", max_results=10_000):
        owner = owner_of(run.data.tags, time.time(), older_than_minutes * 60)
        if owner.state == "gone":
            command = run.data.tags.get(TAG_COMMAND, "-") if run.data.tags.get(TAG_ROLE) == ROLE_SWEEP_PARENT else ""
            found.append(
                RunRow(
                    run.info.run_id,
                    run.info.run_name,
                    experiments[run.info.experiment_id],
                    "RUNNING",
                    run.info.start_time / 1000,
                    run.data.metrics.get("val/ppl"),
                    owner.detail,
                    command,
                )
            )
    return found


def mark_killed(client, row: RunRow) -> None:
    what = "the sweep's process" if row.sweep_command else "its process"
    client.set_tag(
        row.run_id, TAG_STATUS_REASON, f"{what} died without a word ({row.note}); marked by balance-lab runs --stale"
    )
    client.set_terminated(row.run_id, "KILLED")
