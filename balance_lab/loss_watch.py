"""Stop on a NaN or inf training loss without making the CPU wait for the GPU every step.

Reading the loss on the host (`bool(...)`, `.item()`) waits for the whole forward and backward
to finish: the CPU can no longer queue the next step while the GPU works, and the Python of the
training loop shows up in the step time (measured on an H200: ~20% of `base`'s throughput). So
each optimizer step's losses are copied to the host asynchronously, and read one step later,
when the copy has long finished: a bad step is caught before the *next* update, and before any
checkpoint is written or validation runs (`check_now`).
"""

from __future__ import annotations

import torch

from balance_lab.errors import NonFiniteLoss


class LossWatch:
    def __init__(self) -> None:
        self._pending: tuple[int, torch.Tensor, torch.cuda.Event | None] | None = None

    def record(self, step: int, losses_M3: torch.Tensor) -> None:
        """This step's (loss, lm_loss, aux_loss) per micro-batch; checks the previous step's."""
        if losses_M3.is_cuda:
            host_M3 = torch.empty(losses_M3.shape, dtype=losses_M3.dtype, pin_memory=True)
            host_M3.copy_(losses_M3, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        else:
            host_M3, done = losses_M3.detach().cpu(), None
        previous, self._pending = self._pending, (step, host_M3, done)
        if previous is not None:
            self._check(*previous)

    def check_now(self) -> None:
        """Check what was recorded last (waits for it): before a checkpoint, validation, the end."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._check(*pending)

    @staticmethod
    def _check(step: int, losses_M3: torch.Tensor, done: torch.cuda.Event | None) -> None:
        if done is not None:
            done.synchronize()  # only this copy's work; long finished when called from record()
        finite_M = torch.isfinite(losses_M3[:, 0])
        if not bool(finite_M.all()):
            loss, lm_loss, aux_loss = losses_M3[int((~finite_M).nonzero()[0])].tolist()
            raise NonFiniteLoss(f"train/loss is {loss} at step {step} (lm_loss {lm_loss:.4g}, aux_loss {aux_loss:.4g}); "
                                f"stopped instead of training on (lower optim.lr?)")
