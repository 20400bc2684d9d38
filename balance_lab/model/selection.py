"""How a router chooses experts beyond plain top-K of its scores (each switched on by a knob of
the `balance` config group; RoutingArgs in args.py holds them).

- Input jitter (Switch Transformer's `router_jitter_noise`, Megatron's `moe_input_jitter_eps`):
  in training the router reads x * u, u ~ Uniform(1 - eps, 1 + eps) per element; the experts
  still read x.
- Sinkhorn selection (BASE layers; Megatron-Core's `sinkhorn` router): in training, top-K is
  taken on the doubly normalised exp(logits) of this micro-batch, so every expert is chosen
  about equally often; the gates come from the unnormalised scores; evaluation is plain top-K.
- Group-limited routing (DeepSeek-V2/V3 device/node-limited routing): experts form G equal
  groups; each token keeps its `group_topk` best groups, a group scored by the sum of its two
  highest selection scores (bias included, as DeepSeek-V3), then chooses top-K inside them.
- Forced balance (Megatron's `moe_router_force_load_balancing`, torchtitan's
  `_debug_force_load_balance`, OLMo-core's `uniform_expert_assignment`): each token's K experts
  drawn uniformly at random without replacement, whatever the scores; the gates are the chosen
  experts' scores as usual. The best case of balance (the floor of MaxVio) and of step time.
"""

from __future__ import annotations

import torch

SINKHORN_TOL = 1e-4  # Megatron-Core's stopping rule: mean |d1 - d1_old| below this
_EPS = 1e-8  # Megatron-Core's guard against dividing by an empty row or column


def uniform_choice(tokens: int, n_experts: int, top_k: int, generator: torch.Generator) -> torch.Tensor:
    """(T, K) experts drawn uniformly without replacement per token (top-K of uniform noise), from
    `generator` (a CPU generator: the same draws on any device, and its state fits a checkpoint)."""
    noise_TE = torch.rand(tokens, n_experts, generator=generator)
    return noise_TE.topk(top_k, dim=-1).indices


def jitter(x_TD: torch.Tensor, eps: float) -> torch.Tensor:
    """x * Uniform(1 - eps, 1 + eps), element-wise (what the router reads in training)."""
    noise_TD = torch.empty_like(x_TD).uniform_(1.0 - eps, 1.0 + eps)
    return x_TD * noise_TD


@torch.no_grad()
def sinkhorn(logits_TE: torch.Tensor, max_iters: int, tol: float = SINKHORN_TOL) -> torch.Tensor:
    """Megatron-Core's `sinkhorn(cost)`: alternately rescale the rows and columns of exp(logits)
    until the column scales d1 settle (mean change < tol) or `max_iters` passes; returns
    d1 * exp(logits) * d0 (T, E), rows summing to about 1/T and columns to about 1/E.

    Differs from Megatron-Core in two guarded ways: logits are shifted by their maximum before
    exp (an overflow guard; the normalised matrix is the same) and the loop stops after
    `max_iters` passes even if it has not met `tol` (Megatron loops until it does)."""
    logits_TE = logits_TE.to(torch.promote_types(logits_TE.dtype, torch.float32))  # fp32 or wider, as Megatron
    cost_TE = torch.exp(logits_TE - logits_TE.max())
    T, E = cost_TE.shape
    d0_T = cost_TE.new_ones(T)
    d1_E = cost_TE.new_ones(E)
    for _ in range(max_iters):
        d0_T = (1.0 / T) / ((d1_E * cost_TE).sum(dim=1) + _EPS)
        d1_new_E = (1.0 / E) / ((d0_T[:, None] * cost_TE).sum(dim=0) + _EPS)
        error = (d1_new_E - d1_E).abs().mean()
        d1_E = d1_new_E
        if error <= tol:  # a host sync per pass, as in Megatron-Core
            break
    return d1_E * cost_TE * d0_T[:, None]


def group_limited(selection_TE: torch.Tensor, n_groups: int, group_topk: int) -> torch.Tensor:
    """Selection scores with every expert outside each token's `group_topk` best groups set to
    -inf (DeepSeek-V3: group score = sum of the group's top-2 scores). Top-K on the result
    picks only inside the kept groups."""
    T, E = selection_TE.shape
    grouped_TGe = selection_TE.view(T, n_groups, E // n_groups)
    per_group = min(2, E // n_groups)
    group_scores_TG = grouped_TGe.topk(per_group, dim=-1).values.sum(dim=-1)
    kept_groups_TG = group_scores_TG.topk(group_topk, dim=-1).indices
    keep_TG = torch.zeros_like(group_scores_TG, dtype=torch.bool).scatter_(1, kept_groups_TG, True)
    keep_TE = keep_TG[:, :, None].expand_as(grouped_TGe).reshape(T, E)
    return selection_TE.masked_fill(~keep_TE, float("-inf"))
