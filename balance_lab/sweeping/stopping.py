"""Stopping a sweep: every running run finishes its step, saves a checkpoint and is marked KILLED, no
run starts after the stop, and nothing of the sweep outlives the command.

The Hydra driver and its job processes run in a session of their own, so a signal reaches only the
`balance-lab sweep` command, whether it is a terminal's Ctrl-C (the foreground group) or a SIGTERM to
its pid alone (`kill PID`, a service manager, a scheduler). The command then leaves a STOP file in the
sweep's folder: each training process reads it at its next optimizer-step boundary as its one stop
signal (training/checkpointing.py), pending jobs do not start (train.py), and the command waits for
every process of the sweep to end before it marks the parent KILLED and exits 128 + the signal. A
second signal during that wait is sent on to the runs as their second: they stop at once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from balance_lab.training.sweep_stop import STOP_ENV

__all__ = ["STOP_ENV", "STOP_FILE", "SweepStopped"]

STOP_FILE = "STOP"  # in the sweep's folder (hydra.sweep.dir); holds the signal's name
WAIT_SECONDS = float(os.environ.get("BALANCE_LAB_SWEEP_STOP_WAIT", 600))  # for the runs to save their checkpoints


class SweepStopped(KeyboardInterrupt):
    """The sweep command received `signum` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_sigterm():
    """SIGTERM to the sweep command stops it as Ctrl-C does; returns the previous handler."""

    def handler(signum, frame):
        raise SweepStopped(signum)

    return signal.signal(signal.SIGTERM, handler)


def mark_stopping(sweep_dir: Path, signum: int = signal.SIGTERM) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / STOP_FILE).write_text(signal.Signals(signum).name)


def stopping(sweep_dir: Path | str) -> bool:
    return (Path(sweep_dir) / STOP_FILE).exists()


def descendants(pid: int) -> list[int]:
    """Live processes below `pid` (children, grandchildren, ...), from /proc; empty without /proc."""
    children: dict[int, list[int]] = {}
    for entry in _pids():
        fields = _stat(entry)
        if fields and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(entry)  # field 4: the parent's pid
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def wait_for_processes(driver, on_wait) -> list[int]:
    """Until the Hydra `driver` and every process it started have ended (those whose parent died are
    followed too), at most WAIT_SECONDS; what is left then is killed and returned. A second Ctrl-C or
    SIGTERM is sent on to them once (a run then stops at once), and the wait goes on."""
    known: set[int] = set()
    deadline = time.monotonic() + WAIT_SECONDS
    announced = forwarded = False
    while time.monotonic() < deadline:
        try:
            if driver.poll() is None:
                known |= {driver.pid, *descendants(driver.pid)}
            alive = [pid for pid in known if _alive(pid)]
            if not alive:
                return []
            if not announced:
                on_wait(len(alive))
                announced = True
            time.sleep(0.2)
        except KeyboardInterrupt as again:
            if not forwarded:
                _send(alive, getattr(again, "signum", signal.SIGINT))
                forwarded = True
    left = [pid for pid in known if _alive(pid)]
    _send(left, signal.SIGKILL)
    return left


def _send(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _pids() -> list[int]:
    try:
        return [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []


def _stat(pid: int) -> list[str] | None:
    from balance_lab.store.liveness import stat_fields

    return stat_fields(pid)


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")
