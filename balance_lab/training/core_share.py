"""Several trainings on one machine share its cores instead of each taking them all.

torch's default is one intra-op thread per core, so two `balance-lab run` started separately on
one machine run 2 x cores spinning threads on the cores and each step is several times slower
than alone (a 6-step run beside a sweep's two 1-thread jobs on 2 cores: 3.0-3.9 s at 1 thread,
10.9-11.1 s at torch's default 2). Every CPU training registers itself in a folder of this machine
(pid, start time, its run, and its thread count where it is pinned: `threads=N`, a sweep's `--jobs`,
OMP_NUM_THREADS). One whose `threads` is not set then counts the live registered trainings at start
and every SHARE_CHECK_SECONDS, leaves the pinned ones their threads and takes an equal share of the
rest, (cores - pinned threads) // (trainings sharing), at least 1, saying so in one line when that
changes. A changed thread count changes the order of float additions, so a run that shared its
cores is not bit-identical to one that did not.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

SHARE_CHECK_SECONDS = 10.0
REGISTRY_ENV = "BALANCE_LAB_TRAININGS_DIR"


def registry() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or Path(tempfile.gettempdir()) / f"balance-lab-trainings-{os.getuid()}")


def _start_ticks(pid: int) -> str | None:
    from balance_lab.store.liveness import stat_fields

    fields = stat_fields(pid)
    return fields[19] if fields and fields[0] not in ("Z", "X") else None


class CoreShare(L.Callback):
    """Registers the training; with `pinned` None it also takes its share of the cores."""

    def __init__(self, run_name: str, cores: int | None = None, say=None, pinned: int | None = None):
        self.run_name, self.cores = run_name, cores or torch.get_num_threads()  # torch's default: one per core
        self.pinned = pinned  # threads this training was given (None: it shares)
        self.say = say or (lambda text: print(f"balance-lab: {text}", file=sys.stderr, flush=True))
        self.entry = registry() / str(os.getpid())
        self.threads: int | None = None
        self._checked = 0.0

    def others(self) -> list[dict]:
        """The other live trainings registered on this machine (stale entries removed)."""
        found = []
        for path in registry().glob("[0-9]*"):
            if path == self.entry:
                continue
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if _start_ticks(int(path.name)) != info.get("start"):  # its process is gone (or the pid was reused)
                path.unlink(missing_ok=True)
                continue
            found.append(info)
        return found

    def share(self) -> None:
        """Leave the pinned trainings their threads, take an equal share of the rest; one line when it changes."""
        self._checked = time.monotonic()
        others = self.others()
        pinned_threads = sum(int(o.get("threads") or 0) for o in others)
        sharing = 1 + sum(1 for o in others if not o.get("threads"))
        threads = max(1, (self.cores - pinned_threads) // sharing)
        if threads != self.threads:
            if others or self.threads is not None:
                names = ", ".join(_described(o) for o in others[:3]) or "none"
                self.say(
                    f"{len(others)} other training(s) on this machine [{names}]: using {threads} of "
                    f"{self.cores} cores (threads={threads}; set threads= to choose)"
                )
            torch.set_num_threads(threads)
            self.threads = threads

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        self.entry.parent.mkdir(parents=True, exist_ok=True)
        entry = {"pid": os.getpid(), "start": _start_ticks(os.getpid()), "run": self.run_name, "threads": self.pinned}
        self.entry.write_text(json.dumps(entry))
        if self.pinned is None:
            self.share()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.threads is not None and time.monotonic() - self._checked > SHARE_CHECK_SECONDS:
            self.share()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self.entry.unlink(missing_ok=True)


def _described(other: dict) -> str:
    pinned = f", {other['threads']} thread(s)" if other.get("threads") else ""
    return f"{other['run']} (pid {other['pid']}{pinned})"
