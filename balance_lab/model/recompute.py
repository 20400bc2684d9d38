"""Whether autograd is re-running a forward for activation checkpointing (inside backward)."""

from __future__ import annotations

import torch


def recomputing() -> bool:
    """True while autograd re-runs a forward for activation checkpointing (inside backward).

    A term with a side effect in its forward (the global aux loss's count buffer) must skip it
    then: the recomputed forward is the same micro-batch again, not new tokens."""
    return torch._C._current_graph_task_id() != -1
