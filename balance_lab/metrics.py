"""Balance metrics. MaxVio = (max load - mean load) / mean load, per MoE layer, averaged over layers."""

from __future__ import annotations

from typing import Sequence

import torch


def maxvio_per_layer(loads_LE: torch.Tensor) -> torch.Tensor:
    """(L,) MaxVio of each layer's expert loads; a layer that saw no tokens scores 0."""
    loads_LE = loads_LE.to(torch.float64)
    mean_L = loads_LE.mean(dim=-1)
    vio_L = (loads_LE.max(dim=-1).values - mean_L) / mean_L.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(mean_L > 0, vio_L, torch.zeros_like(vio_L))


def maxvio(loads_LE: torch.Tensor | Sequence[Sequence[float]]) -> float:
    """MaxVio averaged over layers (the headline number of the Loss-Free Balancing paper)."""
    return float(maxvio_per_layer(torch.as_tensor(loads_LE)).mean())


def top_expert_frequency(counts_LE: torch.Tensor, tokens: int) -> torch.Tensor:
    """(L,) per layer, the largest fraction of tokens that chose any single expert (specialisation)."""
    return counts_LE.to(torch.float64).max(dim=-1).values / max(tokens, 1)
