"""One DeepSeekMoE feed-forward layer: shared experts + routed fine-grained experts.

Dispatch is sort-based: the T*K (token, expert) slots are sorted by expert so every expert reads
a contiguous slice; each token's K weighted outputs are then summed back (dispatch.py: gathers
only, deterministic on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from balance_lab.model.args import RoutingArgs
from balance_lab.model.dispatch import combine, dispatch, sort_slots
from balance_lab.model.experts import DenseFFN, RoutedExperts
from balance_lab.model.router import Router, Routing


@dataclass
class MoEOutput:
    y_BSD: torch.Tensor
    aux_loss: torch.Tensor | None  # the balancer's loss for this layer (training forwards only)
    counts_BE: torch.Tensor  # routed slots per sequence and expert (int64), before any dropping
    dropped: torch.Tensor  # () int64: slots dropped at expert capacity (0 without a capacity)
    experts_TK: torch.Tensor  # each token's chosen experts (what a routing trace records)
    gates_TK: torch.Tensor  # and their gate weights


class MoELayer(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_routed: int,
        n_shared: int,
        top_k: int,
        expert_hidden: int,
        score_func: str,
        norm_gates: bool,
        balancer: nn.Module,
        routing: RoutingArgs = RoutingArgs(),
    ):
        super().__init__()
        self.router = Router(d_model, n_routed, top_k, score_func, norm_gates, balancer, routing)
        self.experts = RoutedExperts(n_routed, d_model, expert_hidden)
        # The shared experts are one dense FFN n_shared times as wide as a routed expert.
        self.shared = DenseFFN(d_model, n_shared * expert_hidden) if n_shared > 0 else None

    @property
    def balancer(self) -> nn.Module:
        return self.router.balancer

    def forward(self, x_BSD: torch.Tensor) -> MoEOutput:
        B, S, D = x_BSD.shape
        x_TD = x_BSD.reshape(B * S, D)
        routing = self.router(x_TD, batch_size=B)
        y_TD = self._dispatch(x_TD, routing)
        if self.shared is not None:
            y_TD = y_TD + self.shared(x_TD)
        # Balancing losses exist only to shape training; eval forwards neither compute nor count.
        aux_loss = self.balancer.loss(routing) if self.training and torch.is_grad_enabled() else None
        return MoEOutput(
            y_TD.view(B, S, D), aux_loss, routing.counts_BE, routing.dropped, routing.experts_TK, routing.gates_TK
        )

    def _dispatch(self, x_TD: torch.Tensor, routing: Routing) -> torch.Tensor:
        K = routing.top_k
        # Dropped slots sort behind every expert's (id E); they are gathered but never computed.
        order_N, inverse_N = sort_slots(routing.dispatch_experts_TK)
        counts_E = routing.kept_counts_E
        # Under autocast the experts compute in its dtype: cast the T token rows once, not the T*K copies.
        device = x_TD.device.type
        compute_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x_TD.dtype
        gates_N1 = routing.gates_TK.reshape(-1).index_select(0, order_N).unsqueeze(-1).to(compute_dtype)
        x_ND = dispatch(x_TD.to(compute_dtype), order_N, inverse_N, K)
        if routing.kept_TK is None:
            out_ND = self.experts(x_ND, counts_E, gates_N1)  # gate * expert(x), in expert order
        else:  # the experts compute the kept rows; a dropped slot's output is zero
            kept = int(counts_E.sum())  # a host sync on a GPU: the computed rows' count sets the shapes
            out_nD = self.experts(x_ND[:kept], counts_E, gates_N1[:kept])
            out_ND = torch.cat([out_nD, out_nD.new_zeros(x_ND.shape[0] - kept, out_nD.shape[1])])
        return combine(out_ND, order_N, inverse_N, K, dtype=x_TD.dtype)
