"""Causal multi-head self-attention with rotary position embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rotary_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq_F = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # F = head_dim/2
    angles_SF = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq_F)
    return angles_SF.cos(), angles_SF.sin()


def apply_rotary(x_BHSd: torch.Tensor, cos_SF: torch.Tensor, sin_SF: torch.Tensor) -> torch.Tensor:
    x1, x2 = x_BHSd.to(torch.promote_types(x_BHSd.dtype, torch.float32)).chunk(2, dim=-1)  # pairs (i, i + d/2)
    S = x_BHSd.shape[-2]
    cos, sin = cos_SF[:S], sin_SF[:S]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x_BHSd.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, seq_len: int, rope_theta: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        cos_SF, sin_SF = rotary_tables(seq_len, d_model // n_heads, rope_theta)
        self.register_buffer("cos_SF", cos_SF, persistent=False)
        self.register_buffer("sin_SF", sin_SF, persistent=False)

    def forward(self, x_BSD: torch.Tensor) -> torch.Tensor:
        B, S, D = x_BSD.shape
        q, k, v = (
            self.qkv(x_BSD).view(B, S, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        )  # 3 x (B, H, S, d)
        q, k = apply_rotary(q, self.cos_SF, self.sin_SF), apply_rotary(k, self.cos_SF, self.sin_SF)
        y_BHSd = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y_BHSd.transpose(1, 2).reshape(B, S, D))
