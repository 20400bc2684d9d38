"""Auxiliary load-balancing loss (GShard/Switch style) and the router z-loss (ST-MoE).

LBL = alpha * sum_i f_i * P_i with f_i = count_i * N / (K * T) (1 for a uniform router) and P_i
the mean normalised affinity of expert i, so a perfectly uniform router gives LBL = alpha.
The counts carry no gradient; it flows through P only.

Scopes (where f_i is counted; P_i is always this rank's micro-batch):
- micro:    this micro-batch on this rank (what most frameworks do);
- sequence: per sequence, then averaged over sequences (DeepSeek-V2/V3 "sequence-wise");
- global:   summed over every data-parallel rank (one all-reduce of N+1 integers) and, under
            gradient accumulation, over the micro-batches of the optimizer step so far, in a
            buffer reset at step end (Qiu et al., arXiv 2501.11873). Under DDP's gradient
            averaging each rank's loss then carries the full global-batch gradient scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from balance_lab.balancing.base import BalancingTerm, recomputing
from balance_lab.balancing.knobs import AUX_SCOPES
from balance_lab.distributed import all_reduce_sum

if TYPE_CHECKING:
    from balance_lab.model.router import Routing


def normalised_affinities(scores_TE: torch.Tensor) -> torch.Tensor:
    """s'_{i,t} = s_{i,t} / sum_j s_{j,t}: sigmoid scores made a distribution (softmax is one already)."""
    return scores_TE / scores_TE.sum(dim=-1, keepdim=True)


class AuxLoss(BalancingTerm):
    def __init__(self, alpha: float, scope: str = "micro", n_experts: int | None = None):
        super().__init__()
        if scope not in AUX_SCOPES:
            raise ValueError(f"balance.scope={scope!r}: choose one of {', '.join(AUX_SCOPES)}")
        self.alpha = alpha
        self.scope = scope
        if scope == "global":
            if n_experts is None:
                raise ValueError("the global aux loss needs n_experts for its count buffer")
            # [count per expert..., tokens], summed over ranks and this step's micro-batches so far
            self.register_buffer("step_counts_E1", torch.zeros(n_experts + 1, dtype=torch.int64))

    def loss(self, routing: "Routing") -> torch.Tensor:
        E, K, B = routing.num_experts, routing.top_k, routing.batch_size
        probs_TE = normalised_affinities(routing.scores_TE)
        counts_E = routing.counts_E
        if self.scope == "sequence":
            counts_BE = routing.counts_BE
            f_BE = counts_BE.float() * E / (K * (probs_TE.shape[0] // B))
            return self.alpha * (f_BE * probs_TE.view(B, -1, E).mean(dim=1)).sum(dim=-1).mean()
        tokens = probs_TE.shape[0]
        if self.scope == "global":
            counts_E, tokens = self._step_counts(counts_E, tokens)
        f_E = counts_E.float() * E / (K * tokens)  # integer counts, no gradient
        return self.alpha * (f_E * probs_TE.mean(dim=0)).sum()

    # Eager under torch.compile (model/compiling.py): a compiled graph around the recompute check
    # would differ between the forward and its recompute, which activation checkpointing refuses.
    @torch.compiler.disable
    def _step_counts(self, counts_E: torch.Tensor, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's counts so far (every rank, every micro-batch), this micro-batch's added once."""
        if not recomputing():  # a recomputed forward sees this micro-batch a second time
            local_E1 = torch.cat([counts_E, torch.full_like(counts_E[:1], tokens)])  # no host-to-device copy
            self.step_counts_E1 += all_reduce_sum(local_E1)
        E = counts_E.shape[0]
        return self.step_counts_E1[:E], self.step_counts_E1[E]

    def step_end(self, counts_E: torch.Tensor) -> None:
        if self.scope == "global":
            self.step_counts_E1.zero_()


class RouterZLoss(BalancingTerm):
    """weight * mean_t logsumexp(logits_t)^2: keeps router logits small and routing stable."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def loss(self, routing: "Routing") -> torch.Tensor:
        return self.weight * torch.logsumexp(routing.logits_TE, dim=-1).square().mean()
