"""Several trainings on one machine share its cores instead of each taking them all.

torch's default is one intra-op thread per core, so two `balance-lab run` started separately on
one machine run 2 x cores spinning threads on the cores and each step is several times slower
than alone. Each training process whose `threads` is not set registers itself in a folder of this
machine (pid, start time, its run); at start and then every SHARE_CHECK_SECONDS it counts the live
registered trainings and takes (torch's default threads) // count, saying so in one line when that
changes. `threads=N` or OMP_NUM_THREADS opts out (a sweep's jobs get threads from `--jobs`). A
changed thread count changes the order of float additions, so a run that shared its cores is not
bit-identical to one that did not.
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
    def __init__(self, run_name: str, cores: int | None = None, say=None):
        self.run_name, self.cores = run_name, cores or torch.get_num_threads()  # torch's default: one per core
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
        """Take cores // (trainings on this machine) threads; one line when the share changes."""
        self._checked = time.monotonic()
        others = self.others()
        threads = max(1, self.cores // (len(others) + 1))
        if threads != self.threads:
            if others or self.threads is not None:
                names = ", ".join(f"{o['run']} (pid {o['pid']})" for o in others[:3]) or "none"
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
        self.entry.write_text(
            json.dumps({"pid": os.getpid(), "start": _start_ticks(os.getpid()), "run": self.run_name})
        )
        self.share()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.threads is not None and time.monotonic() - self._checked > SHARE_CHECK_SECONDS:
            self.share()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self.entry.unlink(missing_ok=True)
