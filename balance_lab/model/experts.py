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
        self.w_gate_EDH = nn.Parameter(torch.empty(n_experts, d_model, hidden))
        self.w_up_EDH = nn.Parameter(torch.empty(n_experts, d_model, hidden))
        self.w_down_EHD = nn.Parameter(torch.empty(n_experts, hidden, d_model))

    def forward(self, x_ND: torch.Tensor, counts_E: torch.Tensor) -> torch.Tensor:
        """x_ND: N = T*K token slots sorted by expert; counts_E: slots per expert (sums to N)."""
        if _grouped_mm_supported(x_ND):
            return self._forward_grouped(x_ND, counts_E)
        return self._forward_sliced(x_ND, counts_E)

    def _forward_grouped(self, x_ND: torch.Tensor, counts_E: torch.Tensor) -> torch.Tensor:
        offsets_E = counts_E.cumsum(0).to(torch.int32)  # end row of each expert's slice
        w_gate, w_up, w_down = (w.to(x_ND.dtype) for w in (self.w_gate_EDH, self.w_up_EDH, self.w_down_EHD))
        h_NH = F.silu(torch._grouped_mm(x_ND, w_gate, offs=offsets_E)) * torch._grouped_mm(x_ND, w_up, offs=offsets_E)
        return torch._grouped_mm(h_NH, w_down, offs=offsets_E)

    def _forward_sliced(self, x_ND: torch.Tensor, counts_E: torch.Tensor) -> torch.Tensor:
        outputs = []
        for e, x_nD in enumerate(x_ND.split(counts_E.tolist())):
            h_nH = F.silu(x_nD @ self.w_gate_EDH[e]) * (x_nD @ self.w_up_EDH[e])
            outputs.append(h_nH @ self.w_down_EHD[e])
        return torch.cat(outputs)
