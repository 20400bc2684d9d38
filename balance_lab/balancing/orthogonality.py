"""The router orthogonality loss (SimBal, arXiv 2506.14038): keep the experts' router vectors apart.

With R the router weight (E x D) and its rows normalised to unit length, R R^T is the E x E matrix
of cosine similarities between the experts' router vectors; the loss is weight * || R R^T - I ||_1,
the sum of the absolute off-diagonal similarities (the diagonal is exactly 1). It depends on the
weights only, not on this batch's routing, and pushes experts towards distinct directions instead
of pushing their loads towards equal counts. An E = 16 router starts near |cos| ~ 0.1 per pair,
so the sum is ~24 at initialisation: weight 1e-3 adds ~0.02 to the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from balance_lab.balancing.base import BalancingTerm

if TYPE_CHECKING:
    from balance_lab.model.router import Routing


def orthogonality(weight_ED: torch.Tensor) -> torch.Tensor:
    """|| R R^T - I ||_1 of the row-normalised router weight (in fp32 whatever the weight's dtype)."""
    rows_ED = torch.nn.functional.normalize(weight_ED.float(), dim=-1)
    gram_EE = rows_ED @ rows_ED.T  # (E, E) cosine similarities
    return (gram_EE - torch.eye(gram_EE.shape[0], device=gram_EE.device)).abs().sum()


class OrthogonalityLoss(BalancingTerm):
    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def loss(self, routing: "Routing") -> torch.Tensor:
        return self.weight * orthogonality(routing.router_weight_ED)
