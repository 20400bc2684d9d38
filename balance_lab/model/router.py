"""The router: token-to-expert affinities, top-K choice, gate weights.

The balancer decides *who is chosen* (it may bias the scores used for top-K); the gate weights
that scale the chosen experts' outputs always come from the unbiased affinities.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Routing:
    """What one MoE layer decided for one forward pass. T = B*S tokens, E experts, K chosen."""

    logits_TE: torch.Tensor  # router logits (fp32)
    scores_TE: torch.Tensor  # affinities s_{i,t}: sigmoid or softmax of the logits (fp32)
    experts_TK: torch.Tensor  # chosen expert ids (int64)
    gates_TK: torch.Tensor  # weights of the chosen experts' outputs, from the unbiased scores
    batch_size: int  # B: tokens are laid out sequence after sequence, S = T // B each

    @property
    def num_experts(self) -> int:
        return self.scores_TE.shape[-1]

    @property
    def top_k(self) -> int:
        return self.experts_TK.shape[-1]

    # Counted once per forward and shared: the dispatch, the balancing losses and the metrics all use them.
    @cached_property
    def counts_E(self) -> torch.Tensor:
        """Routed token slots per expert, int64."""
        return self.counts_BE.sum(dim=0)

    @cached_property
    def counts_BE(self) -> torch.Tensor:
        """Routed token slots per sequence and expert, int64 (never a float type)."""
        B, E = self.batch_size, self.num_experts
        T, K = self.experts_TK.shape
        seq_T = torch.arange(T, device=self.experts_TK.device) // (T // B)
        slot_ids = (seq_T[:, None] * E + self.experts_TK).reshape(-1)  # (T*K,)
        return count_ids(slot_ids, B * E).view(B, E)


def count_ids(ids_N: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) int64 occurrences of each id in [0, n). Not torch.bincount: on a GPU it reads the
    largest id back to the host first, a host-device sync per call (several per layer and step)."""
    return torch.zeros(n, dtype=torch.int64, device=ids_N.device).index_add_(0, ids_N, torch.ones_like(ids_N))


class Router(nn.Module):
    def __init__(self, d_model: int, n_experts: int, top_k: int, score_func: str, norm_gates: bool, balancer: nn.Module):
        super().__init__()
        self.proj = nn.Linear(d_model, n_experts, bias=False)
        self.top_k = top_k
        self.score_func = score_func
        self.norm_gates = norm_gates
        self.balancer = balancer  # consulted for selection; owns its state (e.g. loss-free biases)

    def forward(self, x_TD: torch.Tensor, batch_size: int) -> Routing:
        # Routing runs in fp32 or wider whatever the autocast dtype: bf16 affinities tie and flip top-K choices.
        dtype = torch.promote_types(x_TD.dtype, torch.float32)
        with torch.autocast(device_type=x_TD.device.type, enabled=False):
            logits_TE = F.linear(x_TD.to(dtype), self.proj.weight.to(dtype))
        if self.score_func == "sigmoid":
            scores_TE = torch.sigmoid(logits_TE)
        else:
            scores_TE = torch.softmax(logits_TE, dim=-1)
        selection_TE = self.balancer.selection_scores(scores_TE.detach())
        experts_TK = selection_TE.topk(self.top_k, dim=-1).indices
        gates_TK = scores_TE.gather(-1, experts_TK)
        if self.norm_gates:
            gates_TK = gates_TK / gates_TK.sum(dim=-1, keepdim=True)
        return Routing(logits_TE, scores_TE, experts_TK, gates_TK, batch_size)
