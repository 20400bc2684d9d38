"""A device tensor on its way to the host, read later without stalling the GPU's queue.

`.item()` or `bool()` on a CUDA tensor makes the CPU wait until the GPU has run everything queued
so far, so the CPU can no longer queue the next step's work ahead. Started right after the value
is computed and read a step later, this copy has long finished when it is read.
"""

from __future__ import annotations

import torch


class HostCopy:
    def __init__(self, tensor: torch.Tensor):
        if tensor.is_cuda:
            self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host.copy_(tensor, non_blocking=True)
            self._done: torch.cuda.Event | None = torch.cuda.Event()
            self._done.record()
        else:
            self._host, self._done = tensor.detach(), None

    def get(self) -> torch.Tensor:
        """The value on the host; waits for this copy (and what was queued before it) only."""
        if self._done is not None:
            self._done.synchronize()
        return self._host
