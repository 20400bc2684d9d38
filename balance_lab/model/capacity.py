"""Expert capacity and token dropping (GShard, Switch Transformer; Megatron-Core's
`moe_expert_capacity_factor` and `moe_token_drop_policy`).

Each expert takes at most C = ceil((T * K / E) * capacity_factor) slots of a forward's T tokens,
counted where the compute happens: one micro-batch on one rank, no communication. An expert
chosen by more slots keeps C of them:

- policy `probs`: the C slots with the highest gates (ties: the earlier token);
- policy `position`: the C earliest tokens.

A dropped slot contributes nothing; its token still passes through the residual connection and
the shared experts. What the balancers and MaxVio count is the router's choice before dropping
(the papers' MaxVio is measured without dropping); `dropped` says what capacity cost.
"""

from __future__ import annotations

import math

import torch


def expert_capacity(tokens: int, top_k: int, n_experts: int, capacity_factor: float) -> int:
    """C = ceil((tokens * K / E) * capacity_factor): slots one expert may take from `tokens` tokens,
    in Megatron-Core's order of operations (get_capacity), which float rounding makes matter:
    T = 960, K = 6, E = 16, f = 1.1 gives 397 this way and 396 as ceil(f * T * K / E)."""
    return math.ceil((tokens * top_k / n_experts) * capacity_factor)


def kept_slots(
    experts_TK: torch.Tensor, gates_TK: torch.Tensor, n_experts: int, capacity: int, policy: str
) -> torch.Tensor:
    """(T, K) bool: True where a (token, expert) slot is within its expert's capacity."""
    expert_N = experts_TK.reshape(-1)  # slot n = token n // K, its (n % K)-th choice
    N = expert_N.numel()
    if policy == "probs":  # highest gate first; the stable sort keeps token order among equal gates
        priority_N = gates_TK.detach().reshape(-1).argsort(descending=True, stable=True)
    else:  # token order
        priority_N = torch.arange(N, device=expert_N.device)
    # Group the prioritised slots by expert (stable: priority order inside each expert) ...
    slots_N = priority_N.index_select(0, expert_N.index_select(0, priority_N).argsort(stable=True))
    # ... then a slot's rank inside its expert is its position minus where its expert starts.
    counts_E = torch.zeros(n_experts, dtype=torch.int64, device=expert_N.device).index_add_(
        0, expert_N, torch.ones_like(expert_N)
    )
    starts_E = counts_E.cumsum(0) - counts_E
    rank_N = torch.arange(N, device=expert_N.device) - starts_E.index_select(0, expert_N.index_select(0, slots_N))
    keep_N = torch.empty(N, dtype=torch.bool, device=expert_N.device)
    keep_N[slots_N] = rank_N < capacity
    return keep_N.view_as(experts_TK)


def renormalised(gates_TK: torch.Tensor, keep_TK: torch.Tensor) -> torch.Tensor:
    """The kept gates rescaled to the sum all K gates had (a token whose every slot was dropped keeps zeros)."""
    kept_TK = gates_TK * keep_TK
    kept_sum_T1 = kept_TK.sum(dim=-1, keepdim=True)
    scale_T1 = gates_TK.sum(dim=-1, keepdim=True) / kept_sum_T1.clamp_min(torch.finfo(gates_TK.dtype).tiny)
    return kept_TK * scale_T1
