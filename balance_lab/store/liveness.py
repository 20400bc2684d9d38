"""Is the process that owns a RUNNING MLflow run still alive?

A `kill -9`, an OOM kill or a lost node leaves its run RUNNING forever: nothing is left to mark
it. Every run therefore records which process owns it (host, pid and the pid's start time, so a
recycled pid is not mistaken for the owner) and a heartbeat tag refreshed while it trains.
On the owner's host a dead process is certain; elsewhere a heartbeat older than a limit is the
evidence.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

TAG_HOST = "balance_lab.host"
TAG_PID = "balance_lab.pid"
TAG_PID_START = "balance_lab.pid_start"
TAG_HEARTBEAT = "balance_lab.heartbeat"  # unix time of the owner's latest sign of life
HEARTBEAT_SECONDS = 60.0


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (the state) on (Linux), or None where there is no such entry."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where /proc is absent."""
    fields = stat_fields(pid)
    return fields[19] if fields else None  # field 22


def _is_zombie(pid: int) -> bool:
    """Killed, but not yet reaped by its parent: nothing runs there any more (kill(pid, 0) still succeeds)."""
    fields = stat_fields(pid)
    return bool(fields) and fields[0] in ("Z", "X")


def owner_tags() -> dict[str, str]:
    pid = os.getpid()
    return {
        TAG_HOST: socket.gethostname(),
        TAG_PID: str(pid),
        TAG_PID_START: _start_ticks(pid) or "",
        TAG_HEARTBEAT: f"{time.time():.0f}",
    }


@dataclass
class Owner:
    state: str  # alive | gone | unknown (another host, or no owner recorded)
    detail: str


def owner_of(tags: dict[str, str], now: float | None = None, older_than: float = 600.0) -> Owner:
    host, pid, start = tags.get(TAG_HOST), tags.get(TAG_PID), tags.get(TAG_PID_START)
    beat = float(tags.get(TAG_HEARTBEAT) or 0.0)
    age = (now or time.time()) - beat if beat else None
    if host == socket.gethostname() and pid:
        ticks = _start_ticks(int(pid))
        if ticks is None and not _pid_exists(int(pid)):
            return Owner("gone", f"process {pid} on {host} is gone")
        if ticks is not None and start and ticks != start:
            return Owner("gone", f"process {pid} on {host} is gone (the pid now belongs to another process)")
        if _is_zombie(int(pid)):
            return Owner("gone", f"process {pid} on {host} is gone (it died; its parent has not reaped it yet)")
        return Owner("alive", f"process {pid} on {host} is running")
    if age is not None and age > older_than:
        return Owner("gone", f"no heartbeat for {age / 60:.0f} min (owner: process {pid} on {host})")
    where = f"process {pid} on {host}" if host else "an unknown process"
    return Owner("unknown", f"{where}; last heartbeat {age / 60:.0f} min ago" if age is not None else where)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Refreshes the heartbeat tag at most every HEARTBEAT_SECONDS; never lets a tracking error through."""

    def __init__(self, client, run_id: str, every: float = HEARTBEAT_SECONDS):
        self.client, self.run_id, self.every = client, run_id, every
        self._last = time.monotonic()

    def beat(self) -> None:
        if time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        try:
            self.client.set_tag(self.run_id, TAG_HEARTBEAT, f"{time.time():.0f}")
        except Exception:  # noqa: BLE001 - a heartbeat is best effort; the metrics logger reports outages
            pass
