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


def load_statistics(counts_LE: torch.Tensor, degrees: Sequence[int] = ()) -> torch.Tensor:
    """(4 + len(degrees),) on the device, each averaged over layers: the loads' coefficient of
    variation, exp(entropy) / E of the load distribution (effective share of experts in use), the
    dead-expert fraction, and the straggler factor max rank load / mean rank load with the experts
    placed contiguously on each of `degrees` expert-parallel ranks; then MaxVio. The report computes
    the same from recorded loads (report/imbalance.py)."""
    loads_LE = counts_LE.to(torch.float64)
    n_layers, n_experts = loads_LE.shape
    mean_L = loads_LE.mean(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
    cv_L = loads_LE.std(dim=-1, unbiased=False) / mean_L
    share_LE = loads_LE / loads_LE.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    entropy_L = -(share_LE * share_LE.clamp_min(torch.finfo(torch.float64).tiny).log()).sum(dim=-1)
    stats = [cv_L.mean(), (entropy_L.exp() / n_experts).mean(), (loads_LE == 0).double().mean()]
    for ranks in degrees:
        rank_LP = loads_LE.view(n_layers, ranks, n_experts // ranks).sum(dim=-1)
        stats.append((rank_LP.max(dim=-1).values / rank_LP.mean(dim=-1).clamp_min(1e-12)).mean())
    return torch.stack(stats)


LOAD_STAT_NAMES = ("load_cv", "load_effective_share", "dead_frac")  # then straggler_ep<P> per degree
