"""Lightning callbacks: training throughput, the progress display, the heartbeat, and a failure for tests."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class Progress(RichProgressBar):
    """Rich progress bar that counts optimizer steps of one long epoch, without Lightning's v_num."""

    def _get_train_description(self, current_epoch: int) -> str:
        return "train"

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class Throughput(L.Callback):
    """Training tokens per second, logged as `train/tokens_per_sec`; validation time excluded."""

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.train_tokens = 0
        self._window_seconds, self._window_tokens = 0.0, 0
        self._start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is None:
            return
        seconds = time.perf_counter() - self._start
        tokens = batch["tokens"][:, 1:].numel() * trainer.world_size
        self.train_seconds += seconds
        self.train_tokens += tokens
        self._window_seconds += seconds
        self._window_tokens += tokens
        if trainer.global_step % trainer.log_every_n_steps == 0 and self._window_seconds > 0:
            pl_module.log("train/tokens_per_sec", self._window_tokens / self._window_seconds)
            self._window_seconds, self._window_tokens = 0.0, 0

    @property
    def tokens_per_sec(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds else 0.0


class FailAfterSteps(L.Callback):
    """Raises after N optimizer steps: a real failure inside training, for testing how it is handled."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.steps:
            raise RuntimeError(f"fail_after_steps={self.steps} reached (a deliberate failure)")


class Heartbeat(L.Callback):
    """Refreshes the run's heartbeat tag (about once a minute) so a run whose process died is found stale."""

    def __init__(self, client, run_id: str) -> None:
        from balance_lab.store.liveness import Heartbeat as Beat

        self._beat = Beat(client, run_id)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 0:
            self._beat.beat()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.global_rank == 0:  # a long validation is not a dead process
            self._beat.beat()
