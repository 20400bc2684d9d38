"""Stop on a NaN or inf training loss without making the CPU wait for the GPU every step.

Reading the loss on the host (`bool(...)`, `.item()`) waits for the whole forward and backward
to finish: the CPU can no longer queue the next step while the GPU works, and the Python of the
training loop shows up in the step time. So each optimizer step's losses are copied to the host
asynchronously (host_copy.py) and read one step later, when the copy has long finished: a bad
step is caught before the *next* update, and before any checkpoint is written or validation
runs (`check_now`).
"""

from __future__ import annotations

import torch

from balance_lab.errors import NonFiniteLoss
from balance_lab.training.host_copy import HostCopy


class LossWatch:
    def __init__(self) -> None:
        self._pending: tuple[int, HostCopy] | None = None

    def record(self, step: int, losses_M3: torch.Tensor) -> None:
        """This step's (loss, lm_loss, aux_loss) per micro-batch; checks the previous step's."""
        previous, self._pending = self._pending, (step, HostCopy(losses_M3))
        if previous is not None:
            self._check(*previous)

    def check_now(self) -> None:
        """Check what was recorded last (waits for it): before a checkpoint, validation, the end."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._check(*pending)

    @staticmethod
    def _check(step: int, copy: HostCopy) -> None:
        losses_M3 = copy.get()
        finite_M = torch.isfinite(losses_M3[:, 0])
        if not bool(finite_M.all()):
            loss, lm_loss, aux_loss = losses_M3[int((~finite_M).nonzero()[0])].tolist()
            raise NonFiniteLoss(
                f"train/loss is {loss} at step {step} (lm_loss {lm_loss:.4g}, aux_loss {aux_loss:.4g}); "
                f"stopped instead of training on (lower optim.lr?)"
            )
