"""The balancing interface: the three moments at which a method acts on routing.

1. selection: `selection_scores(scores_TE)` returns the scores top-K is taken on (a loss-free
   bias shifts or scales them; the gate weights are never affected);
2. loss: `loss(routing)` returns an auxiliary loss term for this forward, or None;
3. step end: `step_end(counts_E)` gets the tokens per expert summed over every micro-batch of the
   optimizer step and every data-parallel rank, and updates state.

A method is a `Balancer`: an ordered set of `BalancingTerm`s, so methods combine in config
(loss-free + a small sequence-wise aux loss, as DeepSeek-V3) without a new class. Every MoE
layer owns its own Balancer, so per-layer state (biases) lives in that layer's buffers and is
saved in checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from balance_lab.model.recompute import recomputing

__all__ = ["Balancer", "BalancingTerm", "recomputing"]

if TYPE_CHECKING:
    from balance_lab.model.router import Routing


class BalancingTerm(nn.Module):
    """One ingredient of a balancing method. Override only the moments it acts on."""

    def selection_scores(self, scores_TE: torch.Tensor, logits_TE: torch.Tensor | None = None) -> torch.Tensor:
        return scores_TE

    def loss(self, routing: "Routing") -> torch.Tensor | None:
        return None

    def bias_range(self) -> torch.Tensor | None:
        """max - min of a selection bias (loss-free), else None: how far apart balance pushed the experts."""
        return None

    def step_end(self, counts_E: torch.Tensor) -> None:
        pass


class Balancer(nn.Module):
    """The terms of one method, applied in order."""

    def __init__(self, terms: list[BalancingTerm]):
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def selection_scores(self, scores_TE: torch.Tensor, logits_TE: torch.Tensor | None = None) -> torch.Tensor:
        for term in self.terms:
            scores_TE = term.selection_scores(scores_TE, logits_TE)
        return scores_TE

    def loss(self, routing: "Routing") -> torch.Tensor | None:
        losses = []
        for term in self.terms:  # a plain loop: torch.compile cannot trace a walrus inside a comprehension
            loss = term.loss(routing)
            if loss is not None:
                losses.append(loss)
        return torch.stack(losses).sum() if losses else None

    def bias_range(self) -> torch.Tensor | None:
        return next((r for term in self.terms if (r := term.bias_range()) is not None), None)

    @torch.no_grad()
    def step_end(self, counts_E: torch.Tensor) -> None:
        if counts_E.is_floating_point():
            raise TypeError(
                f"expert counts must be integers, got {counts_E.dtype} (float counts round and flip updates)"
            )
        for term in self.terms:
            term.step_end(counts_E)
