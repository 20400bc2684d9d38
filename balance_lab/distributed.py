"""torch.distributed helpers that degrade to no-ops in a single process.

Not Lightning's `strategy.reduce`: it runs a barrier before every reduction, and a barrier makes
the host wait for the GPU, once per call, every training step.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def data_parallel_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def data_parallel_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` in place over every data-parallel rank (no gradient flows through it)."""
    if data_parallel_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Max of `tensor`, in place, over every data-parallel rank."""
    if data_parallel_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor
