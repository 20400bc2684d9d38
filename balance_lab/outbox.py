"""Metrics on their way to the tracking store, kept until the store has them.

Training must not die because a tracking server restarts, and no metric may vanish silently. The
outbox sends each batch of metrics at once; when the store does not answer it keeps them (and
what follows), says so once on stderr, retries at most every `retry_seconds` (so an outage costs
training a few seconds per retry, not a stall per step) and delivers everything, in order, as soon
as the store is back. What is still undelivered when the run ends is written to a JSON-lines file
that `balance-lab runs --sync FILE` replays.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch


class MetricOutbox:
    def __init__(self, client, run_id: str, retry_seconds: float = 20.0):
        self.client, self.run_id, self.retry_seconds = client, run_id, retry_seconds
        self.pending: list[Any] = []  # mlflow.entities.Metric, oldest first
        self.outages = 0
        self._next_try = 0.0
        self._failing = False

    def log_batch(self, metrics: list) -> None:
        self.pending.extend(metrics)
        if not self._failing or time.monotonic() >= self._next_try:
            self.flush()

    def flush(self) -> bool:
        """Send what is pending; True when nothing is left."""
        try:
            while self.pending:
                chunk = self.pending[:BATCH]
                self.client.log_batch(self.run_id, metrics=chunk)
                del self.pending[: len(chunk)]
        except Exception as exc:  # noqa: BLE001 - any transport or server error: keep the metrics
            self._next_try = time.monotonic() + self.retry_seconds
            if not self._failing:
                self.outages += 1
                print(f"warning: the tracking store does not answer ({type(exc).__name__}: {str(exc)[:200]}); "
                      f"training goes on, metrics are kept and sent when it is back", file=sys.stderr)
            self._failing = True
            return False
        if self._failing:
            print("the tracking store answers again: every kept metric was delivered", file=sys.stderr)
        self._failing = False
        return True

    def close(self, spill_path: Path, attempts: int = 3, wait_seconds: float = 5.0) -> Path | None:
        """Final delivery; what still cannot be sent goes to `spill_path` (returned), else None."""
        for attempt in range(attempts):
            if self.flush():
                return None
            if attempt + 1 < attempts:
                time.sleep(wait_seconds)
        spill_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spill_path, "w") as f:
            for m in self.pending:
                f.write(json.dumps({"run_id": self.run_id, "key": m.key, "value": m.value, "timestamp": m.timestamp,
                                    "step": m.step}) + "\n")
        return spill_path


def replay(client, path: Path) -> tuple[int, set[str]]:
    """Send a spilled file's metrics; returns (metrics sent, run ids)."""
    from mlflow.entities import Metric

    by_run: dict[str, list] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_run.setdefault(row["run_id"], []).append(Metric(row["key"], row["value"], row["timestamp"], row["step"]))
    for run_id, metrics in by_run.items():
        for i in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + BATCH])
    return sum(len(m) for m in by_run.values()), set(by_run)


class OutboxClient:
    """An MlflowClient whose log_batch goes through an outbox; everything else is the client's."""

    def __init__(self, client, outbox: MetricOutbox):
        self._client, self._outbox = client, outbox

    def log_batch(self, run_id: str, metrics=(), params=(), tags=(), **kwargs) -> None:
        if params or tags:
            self._client.log_batch(run_id, params=params, tags=tags, **kwargs)
        if metrics:
            self._outbox.log_batch(list(metrics))

    def __getattr__(self, name: str):
        return getattr(self._client, name)
