"""Auxiliary load-balancing loss (GShard/Switch style) and the router z-loss (ST-MoE).

LBL = alpha * sum_i f_i * P_i with f_i = count_i * N / (K * T) (1 for a uniform router) and P_i
the mean normalised affinity of expert i, so a perfectly uniform router gives LBL = alpha.
The counts carry no gradient; it flows through P only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from balance_lab.balancing.base import BalancingTerm

if TYPE_CHECKING:
    from balance_lab.model.router import Routing

AUX_SCOPES = ("micro", "sequence")


def normalised_affinities(scores_TE: torch.Tensor) -> torch.Tensor:
    """s'_{i,t} = s_{i,t} / sum_j s_{j,t}: sigmoid scores made a distribution (softmax is one already)."""
    return scores_TE / scores_TE.sum(dim=-1, keepdim=True)


class AuxLoss(BalancingTerm):
    """scope=micro: f and P over this micro-batch; scope=sequence: per sequence, then averaged."""

    def __init__(self, alpha: float, scope: str = "micro"):
        super().__init__()
        if scope not in AUX_SCOPES:
            raise ValueError(f"balance.scope={scope!r}: choose one of {', '.join(AUX_SCOPES)}")
        self.alpha = alpha
        self.scope = scope

    def loss(self, routing: "Routing") -> torch.Tensor:
        E, K, B = routing.num_experts, routing.top_k, routing.batch_size
        probs_TE = normalised_affinities(routing.scores_TE)
        if self.scope == "micro":
            counts_1E = torch.bincount(routing.experts_TK.reshape(-1), minlength=E)[None]
            probs_1TE = probs_TE[None]
        else:
            counts_1E = routing.counts_BE()  # (B, E)
            probs_1TE = probs_TE.view(B, -1, E)  # (B, S, E)
        tokens = probs_1TE.shape[1]
        f_1E = counts_1E.float() * E / (K * tokens)  # integer counts, no gradient
        P_1E = probs_1TE.mean(dim=1)
        return self.alpha * (f_1E * P_1E).sum(dim=-1).mean()


class RouterZLoss(BalancingTerm):
    """weight * mean_t logsumexp(logits_t)^2: keeps router logits small and routing stable."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def loss(self, routing: "Routing") -> torch.Tensor:
        return self.weight * torch.logsumexp(routing.logits_TE, dim=-1).square().mean()
