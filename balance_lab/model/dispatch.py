"""Moving token rows to expert order and back.

The T*K (token, expert) slots are sorted by expert (`order_N`); `inverse_N` undoes the sort. The
dispatch reads each slot's token row, the combine sums each token's K expert outputs.

On a GPU both are written with gathers only: with index_add_, both backward passes (and the
forward combine) are scatters with atomic adds, slow there and non-deterministic. As a gather
plus a sum over the K slots of a token, in a fixed order, every run gives the same numbers and
the MoE layer runs 1.08-1.27x faster (H200, benchmarks/RESULTS.md). On the CPU index_add_ is
sequential (deterministic) and avoids materialising the (T*K, D) rows once more: 1.1-1.2x
faster there at 64 experts, so the CPU keeps it.
"""

from __future__ import annotations

import torch


def sort_slots(experts_TK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(order_N, inverse_N): the slots grouped by expert (stable sort), and the inverse permutation."""
    expert_of_slot_N = experts_TK.reshape(-1)  # (N,) with N = T*K; slot n belongs to token n // K
    order_N = expert_of_slot_N.argsort(stable=True)
    inverse_N = torch.empty_like(order_N)
    inverse_N[order_N] = torch.arange(order_N.numel(), device=order_N.device)
    return order_N, inverse_N


class _Dispatch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_TD: torch.Tensor, order_N: torch.Tensor, inverse_N: torch.Tensor, K: int) -> torch.Tensor:
        ctx.save_for_backward(inverse_N)
        ctx.K = K
        return x_TD.index_select(0, order_N // K)  # (N, D): row n is the token of sorted slot n

    @staticmethod
    def backward(ctx, grad_ND: torch.Tensor):
        (inverse_N,) = ctx.saved_tensors
        grad_TKD = grad_ND.index_select(0, inverse_N).view(-1, ctx.K, grad_ND.shape[-1])
        return grad_TKD.sum(dim=1), None, None, None  # each token's K slots


class _Combine(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, out_ND: torch.Tensor, order_N: torch.Tensor, inverse_N: torch.Tensor, K: int, dtype: torch.dtype
    ) -> torch.Tensor:
        ctx.save_for_backward(order_N)
        ctx.K, ctx.out_dtype = K, out_ND.dtype
        out_TKD = out_ND.index_select(0, inverse_N).view(-1, K, out_ND.shape[-1])
        return out_TKD.sum(dim=1, dtype=dtype)  # (T, D), summed in `dtype` (fp32 under bf16 autocast)

    @staticmethod
    def backward(ctx, grad_TD: torch.Tensor):
        (order_N,) = ctx.saved_tensors
        return grad_TD.index_select(0, order_N // ctx.K).to(ctx.out_dtype), None, None, None, None


def dispatch(x_TD: torch.Tensor, order_N: torch.Tensor, inverse_N: torch.Tensor, K: int) -> torch.Tensor:
    """(T, D) tokens -> (N, D) rows in expert order."""
    if x_TD.is_cuda:
        return _Dispatch.apply(x_TD, order_N, inverse_N, K)
    return x_TD.index_select(0, order_N // K)  # backward: index_add_


def combine(
    out_ND: torch.Tensor, order_N: torch.Tensor, inverse_N: torch.Tensor, K: int, dtype: torch.dtype
) -> torch.Tensor:
    """(N, D) expert outputs in expert order -> (T, D), each token's K outputs summed in `dtype`."""
    if out_ND.is_cuda:
        return _Combine.apply(out_ND, order_N, inverse_N, K, dtype)
    y_TD = out_ND.new_zeros(out_ND.shape[0] // K, out_ND.shape[1], dtype=dtype)
    return y_TD.index_add_(0, order_N // K, out_ND.to(dtype))
