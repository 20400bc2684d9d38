"""Feed-forward experts: a dense SwiGLU FFN, and a bank of routed SwiGLU experts.

The routed bank works on tokens already sorted by expert: expert e owns the next counts_E[e]
rows. On CUDA one `torch._grouped_mm` call per projection covers every expert; on the CPU a loop
over contiguous slices is faster (measured in benchmarks/moe_layer.py), still with no mask over
all tokens and no (tokens x experts x hidden) tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseFFN(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


def _grouped_mm_supported(x: torch.Tensor) -> bool:
    return x.is_cuda and hasattr(torch, "_grouped_mm")


class RoutedExperts(nn.Module):
    def __init__(self, n_experts: int, d_model: int, hidden: int):
        super().__init__()
        # gate and up projections side by side (columns [:H] gate, [H:] up): one matmul per expert
        # instead of two, which matters for fine-grained experts whose H is small
        self.w_gate_up_ED2H = nn.Parameter(torch.empty(n_experts, d_model, 2 * hidden))
        self.w_down_EHD = nn.Parameter(torch.empty(n_experts, hidden, d_model))

    def forward(self, x_ND: torch.Tensor, counts_E: torch.Tensor, gates_N1: torch.Tensor) -> torch.Tensor:
        """x_ND: N = T*K token slots sorted by expert; counts_E: slots per expert (sums to N);
        gates_N1: each slot's gate. Returns gate * expert(x) per slot, (N, D).

        The gate scales the hidden activation (N, H) rather than the output (N, D): the same
        product, since the down projection is linear, and cheaper when experts are fine-grained (H < D).
        """
        if _grouped_mm_supported(x_ND):
            return self._forward_grouped(x_ND, counts_E, gates_N1)
        return self._forward_sliced(x_ND, counts_E, gates_N1)

    def _forward_grouped(self, x_ND: torch.Tensor, counts_E: torch.Tensor, gates_N1: torch.Tensor) -> torch.Tensor:
        offsets_E = counts_E.cumsum(0).to(torch.int32)  # end row of each expert's slice
        # _grouped_mm has no autocast rule: the weights follow x, which MoELayer casts to the autocast dtype
        w_gate_up, w_down = self.w_gate_up_ED2H.to(x_ND.dtype), self.w_down_EHD.to(x_ND.dtype)
        gate_NH, up_NH = torch._grouped_mm(x_ND, w_gate_up, offs=offsets_E).chunk(2, dim=-1)
        h_NH = F.silu(gate_NH) * up_NH * gates_N1.to(x_ND.dtype)
        return torch._grouped_mm(h_NH, w_down, offs=offsets_E)

    def _forward_sliced(self, x_ND: torch.Tensor, counts_E: torch.Tensor, gates_N1: torch.Tensor) -> torch.Tensor:
        # unbind, not w[e]: each w[e]'s backward would add a zero-filled (E, D, H) gradient per expert
        # (E full-size buffers per weight per step); unbind's backward stacks the E slices once.
        outputs, sizes = [], counts_E.tolist()
        weights = zip(self.w_gate_up_ED2H.unbind(0), self.w_down_EHD.unbind(0))
        for x_nD, g_n1, (w_gate_up_D2H, w_down_HD) in zip(x_ND.split(sizes), gates_N1.split(sizes), weights):
            gate_nH, up_nH = (x_nD @ w_gate_up_D2H).chunk(2, dim=-1)
            outputs.append((F.silu(gate_nH) * up_nH * g_n1) @ w_down_HD)
        return torch.cat(outputs)
