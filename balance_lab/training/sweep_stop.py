"""A run inside a stopped sweep: the sweep command leaves a STOP file (sweeping/stopping.py) whose path
every process of the sweep has in STOP_ENV; a run reads it at each optimizer-step boundary as its stop
signal (checkpointing.py), so the sweep's processes need no signal of their own."""

from __future__ import annotations

import os
import signal
from pathlib import Path

STOP_ENV = "BALANCE_LAB_SWEEP_STOP"  # the STOP file's path


def sweep_stop_requested() -> int | None:
    """In a process of a sweep: the signal that stopped the sweep, once it has; else None."""
    path = os.environ.get(STOP_ENV)
    if not path:
        return None
    try:
        name = Path(path).read_text().strip()
    except OSError:
        return None
    return int(getattr(signal, name, signal.SIGTERM))
