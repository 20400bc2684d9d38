"""Periodic checkpoints and a clean stop on SIGINT/SIGTERM, both at optimizer-step boundaries.

A checkpoint holds what Lightning saves (weights, optimizer, LR schedule, loop progress, every
buffer: loss-free biases, accumulated counts, MaxVio sums) plus the RNG states, the MLflow run id
and the resolved config, so `balance-lab run --resume` needs nothing else. The data position is
the global step (the datamodule's sampler restarts at the next micro-batch).

On the first SIGINT or SIGTERM the run finishes the optimizer step it is in (with several
data-parallel ranks, the next one: see StopVote), saves, and stops
(raising Interrupted out of trainer.fit: no validation first);
a second signal stops at once (KeyboardInterrupt; the run is still marked KILLED).
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from balance_lab.distributed import all_reduce_max
from balance_lab.errors import DiskFull, Interrupted, is_disk_full
from balance_lab.training.host_copy import HostCopy
from balance_lab.training.sweep_stop import sweep_stop_requested

CHECKPOINT_NAME = "last.ckpt"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def rng_states() -> dict[str, Any]:
    # numpy's key array as a tensor: checkpoints must load with torch.load(weights_only=True)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The balance-lab part of a checkpoint (run id, config, step) without reading the weights into memory."""
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    meta = checkpoint.get("balance_lab")
    if meta is None:
        raise ValueError(f"{path} is not a balance-lab checkpoint (it has no 'balance_lab' entry)")
    return {**meta, "global_step": checkpoint.get("global_step")}


class StopVote:
    """Data-parallel ranks agree to stop one step late: each step all-reduces the ranks' signals
    (max) and reads the previous step's result, long finished by then, so no rank makes its host
    wait for its GPU every step just to learn that nobody was signalled. Every rank reads the
    same reduced value at the same step, so all stop together."""

    def __init__(self) -> None:
        self._pending: HostCopy | None = None

    def exchange(self, local_signum: int, device: torch.device) -> int:
        flag = all_reduce_max(torch.full((1,), local_signum, dtype=torch.int32, device=device))  # no host copy
        previous, self._pending = self._pending, HostCopy(flag)
        return 0 if previous is None else int(previous.get().item())


class StepCheckpoints(L.Callback):
    def __init__(self, directory: str | Path, every_n_steps: int, run_id: str, config_yaml: str, on_saved=None):
        self.path = Path(directory) / CHECKPOINT_NAME
        self.every_n_steps, self.run_id, self.config_yaml = every_n_steps, run_id, config_yaml
        self.on_saved = on_saved  # called with the path after each save (records it on the MLflow run)
        self.signum: int | None = None
        self._last_step: int | None = None
        self._stop_at: int | None = None  # the step a stop was saved at; raised before the next batch
        self._previous_handlers: dict[int, Any] = {}
        self._vote = StopVote()
        self._saved_step: int | None = None  # the step of the checkpoint on disk (a resumed run's too)

    # ---- signals: installed after Lightning's own (which would stop without saving) -----------
    def on_train_start(self, trainer, pl_module) -> None:
        self._last_step = trainer.global_step
        for signum in _SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._request_stop)

    def _request_stop(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: stop now, without a checkpoint
            self._restore_handlers()
            raise KeyboardInterrupt
        self.signum = signum

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers.clear()

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_handlers()

    # ---- saving at step boundaries -----------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._last_step:  # inside a gradient-accumulation window: no optimizer step yet
            return
        self._last_step = step
        stop = self._stop_requested(trainer)
        if stop or (self.every_n_steps and step % self.every_n_steps == 0):
            self.save(trainer)
        self._stop_at = step if stop else None

    # Stopping is an exception raised before the next batch (or validation batch) does any work:
    # after Lightning has logged this step's metrics, and without trainer.should_stop's validation
    # pass first (a long wait under a SIGTERM grace period).
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._stop_at is not None:
            raise Interrupted(self.signum, self._stop_at, self.path, self.run_id)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._stop_at is not None and trainer.state.fn == "fit":  # not the final validate() call
            raise Interrupted(self.signum, self._stop_at, self.path, self.run_id)

    def _stop_requested(self, trainer) -> bool:
        """Every rank stops at the same step: one rank's signal is every rank's signal. A stopped
        sweep's STOP file counts as this process's first signal (sweeping/stopping.py)."""
        if self.signum is None:
            self.signum = sweep_stop_requested()
        if trainer.world_size == 1:
            return self.signum is not None  # no device tensor, no host sync
        signum = self._vote.exchange(self.signum or 0, trainer.strategy.root_device)
        if signum and self.signum is None:
            self.signum = signum
        return bool(signum)

    def save(self, trainer) -> None:
        loss_watch = getattr(trainer.lightning_module, "loss_watch", None)
        if loss_watch is not None:
            loss_watch.check_now()  # a checkpoint never holds weights that a NaN step wrote
        partial = self.path.with_name(f".{self.path.name}.partial")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(partial)  # every rank calls it; rank 0 writes (checkpoint_io.py: in place)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if not is_disk_full(exc):
                raise
            kept = (
                f"the checkpoint of step {self._saved_step} is kept"
                if self._saved_step is not None
                else ("no earlier checkpoint exists")
            )
            raise DiskFull(
                exc.errno,
                f"disk full while saving the checkpoint at step {trainer.global_step} "
                f"({exc.strerror}: {self.path.parent}); {kept}",
            ) from exc
        if trainer.global_rank == 0:
            os.replace(partial, self.path)  # a crash while writing never leaves a broken last.ckpt
            self._saved_step = trainer.global_step
            if self.on_saved is not None:
                self.on_saved(self.path, trainer.global_step)
        trainer.strategy.barrier()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["balance_lab"] = {"run_id": self.run_id, "config": self.config_yaml, "rng": rng_states()}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._saved_step = checkpoint.get("global_step")  # the resumed checkpoint stays until a newer one is saved
        if "balance_lab" in checkpoint:
            set_rng_states(checkpoint["balance_lab"]["rng"])
