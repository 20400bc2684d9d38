"""What a run writes to the tracking store, kept until the store has it.

Training must not die because a tracking server restarts, and nothing may vanish silently. The
outbox sends metrics, tags and small text artifacts (the config, the expert loads) at once; when
the store does not answer it keeps them (and what follows), says so once on stderr, retries at
most every `retry_seconds` (so an outage costs training a few seconds per retry, not a stall per
step) and delivers everything, metrics in order, as soon as the store is back. At the end of the
run it waits for the store about a minute (a server restart), then writes what is still
undelivered to a JSON-lines file that `balance-lab runs --sync FILE` replays.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from balance_lab.errors import DiskFull, is_disk_full

BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch
# Seconds between the final delivery attempts: one minute in all, never more than 8 s apart, so a
# server that comes back after a restart is used within 8 s.
CLOSING_WAITS = (1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 5.0)


class Outbox:
    def __init__(self, client, run_id: str, retry_seconds: float = 20.0):
        self.client, self.run_id, self.retry_seconds = client, run_id, retry_seconds
        self.pending: list[Any] = []  # mlflow.entities.Metric, oldest first
        self.tags: dict[str, str] = {}  # the latest value of each tag not yet delivered
        self.texts: dict[str, str] = {}  # artifact file -> text not yet delivered
        self.outages = 0
        self._next_try = 0.0
        self._failing = False

    def __len__(self) -> int:
        """How many records (metric values, tags, artifacts) the store has not taken yet."""
        return len(self.pending) + len(self.tags) + len(self.texts)

    def log_batch(self, metrics: list) -> None:
        self.pending.extend(metrics)
        self._send_when_due()

    def set_tag(self, key: str, value: str) -> None:
        self.tags[key] = value
        self._send_when_due()

    def log_text(self, text: str, artifact_file: str) -> None:
        self.texts[artifact_file] = text
        self._send_when_due()

    def _send_when_due(self) -> None:
        if not self._failing or time.monotonic() >= self._next_try:
            self.flush()

    def flush(self) -> bool:
        """Send what is kept; True when nothing is left."""
        try:
            self._send()
        except Exception as exc:  # noqa: BLE001 - any transport or server error: keep everything
            self._next_try = time.monotonic() + self.retry_seconds
            if not self._failing:
                self.outages += 1
                print(
                    f"warning: the tracking store does not answer ({type(exc).__name__}: {str(exc)[:200]}); "
                    f"training goes on, metrics are kept and sent when it is back",
                    file=sys.stderr,
                )
            self._failing = True
            return False
        if self._failing:
            print("the tracking store answers again: everything kept was delivered", file=sys.stderr)
        self._failing = False
        return True

    def _send(self) -> None:
        while self.pending:
            chunk = self.pending[:BATCH]
            self.client.log_batch(self.run_id, metrics=chunk)
            del self.pending[: len(chunk)]
        for key in list(self.tags):
            self.client.set_tag(self.run_id, key, self.tags[key])
            del self.tags[key]
        for artifact_file in list(self.texts):
            self.client.log_text(self.run_id, self.texts[artifact_file], artifact_file)
            del self.texts[artifact_file]

    def close(self, spill_path: Path, waits: tuple[float, ...] = CLOSING_WAITS) -> Path | None:
        """Final delivery, retried after each of `waits`; what still cannot be sent goes to
        `spill_path` (returned), else None."""
        for wait in (*waits, None):
            if self.flush():
                return None
            if wait is not None:
                time.sleep(wait)
        try:
            self._spill(spill_path)
        except OSError as exc:
            spill_path.unlink(missing_ok=True)
            if not is_disk_full(exc):
                raise
            raise DiskFull(
                exc.errno,
                f"disk full while writing {spill_path} ({exc.strerror}): the {len(self)} "
                "records the store did not take are lost; what it took before stays",
            ) from exc
        return spill_path

    def _spill(self, spill_path: Path) -> None:
        spill_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spill_path, "w") as f:
            for m in self.pending:
                f.write(
                    json.dumps(
                        {
                            "run_id": self.run_id,
                            "key": m.key,
                            "value": m.value,
                            "timestamp": m.timestamp,
                            "step": m.step,
                        }
                    )
                    + "\n"
                )
            for key, value in self.tags.items():
                f.write(json.dumps({"run_id": self.run_id, "tag": key, "value": value}) + "\n")
            for artifact_file, text in self.texts.items():
                f.write(json.dumps({"run_id": self.run_id, "artifact": artifact_file, "text": text}) + "\n")


def replay(client, path: Path) -> tuple[int, set[str]]:
    """Send a spilled file's records (metrics, then tags and artifacts); returns (records sent, run ids)."""
    from mlflow.entities import Metric

    metrics: dict[str, list] = {}
    others: list[dict] = []
    for row in _records(Path(path)):  # every line checked before the first is sent
        if "key" in row:
            metrics.setdefault(row["run_id"], []).append(
                Metric(row["key"], row["value"], row["timestamp"], row["step"])
            )
        else:
            others.append(row)
    for run_id, run_metrics in metrics.items():
        for i in range(0, len(run_metrics), BATCH):
            client.log_batch(run_id, metrics=run_metrics[i : i + BATCH])
    for row in others:
        if "tag" in row:
            client.set_tag(row["run_id"], row["tag"], row["value"])
        else:
            client.log_text(row["run_id"], row["text"], row["artifact"])
    return sum(len(m) for m in metrics.values()) + len(others), set(metrics) | {row["run_id"] for row in others}


# The fields of each kind of line _spill writes.
_RECORD_FIELDS = (
    {"run_id", "key", "value", "timestamp", "step"},
    {"run_id", "tag", "value"},
    {"run_id", "artifact", "text"},
)


def _records(path: Path) -> list[dict]:
    """The file's records; ValueError naming the first line that is not one (not a spilled outbox file)."""
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not any(fields <= row.keys() for fields in _RECORD_FIELDS):
            raise ValueError(f"{path} line {number}: not a record of a run's unsent-RUN.jsonl file; nothing was sent")
        rows.append(row)
    return rows


class OutboxClient:
    """An MlflowClient whose log_batch goes through an outbox; everything else is the client's."""

    def __init__(self, client, outbox: Outbox):
        self._client, self._outbox = client, outbox

    def log_batch(self, run_id: str, metrics=(), params=(), tags=(), **kwargs) -> None:
        if params or tags:
            self._client.log_batch(run_id, params=params, tags=tags, **kwargs)
        if metrics:
            self._outbox.log_batch(list(metrics))

    def __getattr__(self, name: str):
        return getattr(self._client, name)
