"""Quantile Balancing (QB; Megatron-Core `moe_router_load_balancing_type=quantile_balancing`, 2026; the
method by Jianlin Su): a per-expert bias beta set by dual coordinate descent, not a fixed step u.

In each training forward (a micro-batch of m tokens, n experts, K chosen), with S the selection scores
(the router logits, as Megatron, or the affinities with space=scores):
- the choice is top-K of S - beta; the (K+1)-th value a_i of S - beta is token i's admission cutoff;
- target = floor(m K / n) tokens per expert; expert j's candidate bias is the (target+1)-th largest
  of S_ij - a_i over the tokens: the bias at which about `target` tokens would choose j.
At the optimizer step's end the candidates are averaged over the step's micro-batches, then over the
data-parallel ranks (each rank's average counts once, as Megatron averages them), and
beta <- ema * beta + (1 - ema) * average, then beta -= mean(beta). No update in evaluation, in a
forward without gradients, or in an activation-checkpointing recomputation. The gates come from the
unbiased affinities. beta and the step's sums are fp32 buffers (in checkpoints).
"""

from __future__ import annotations

import torch

from balance_lab.balancing.base import BalancingTerm, recomputing
from balance_lab.distributed import all_reduce_sum, data_parallel_size

SPACES = ("logits", "scores")  # what beta is added to: Megatron's logits, or the sigmoid/softmax affinities


def qb_candidate(selection_TE: torch.Tensor, beta_E: torch.Tensor, top_k: int) -> torch.Tensor:
    """(E,) candidate biases of one micro-batch (the definition above); fp32."""
    selection_TE = selection_TE.float()
    tokens, experts = selection_TE.shape
    cutoff_T1 = (selection_TE - beta_E).topk(top_k + 1, dim=-1).values[:, -1:]  # (T, 1) the (K+1)-th value
    target = min(tokens * top_k // experts, tokens - 1)
    return (selection_TE - cutoff_T1).topk(target + 1, dim=0).values[-1]  # (E,) the (target+1)-th largest


class QuantileBalancing(BalancingTerm):
    def __init__(self, n_experts: int, top_k: int, ema: float = 0.0, space: str = "logits"):
        super().__init__()
        if space not in SPACES:
            raise ValueError(f"balance.quantile_space={space!r}: choose one of {', '.join(SPACES)}")
        if not 0 < top_k < n_experts:
            raise ValueError(f"quantile balancing needs 0 < model.top_k < experts, got {top_k} of {n_experts}")
        self.top_k, self.ema, self.space = top_k, ema, space
        self.register_buffer("beta_E", torch.zeros(n_experts))
        self.register_buffer("candidate_sum_E", torch.zeros(n_experts))  # this step's candidates, summed
        self.register_buffer("candidates", torch.zeros((), dtype=torch.int64))  # how many micro-batches
        self._pending = False  # a candidate was added this step

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)  # module-wide casts (bf16) must not reach beta or the sums
        for name in ("beta_E", "candidate_sum_E"):
            if getattr(self, name).dtype != torch.float32:
                setattr(self, name, getattr(self, name).float())
        return self

    def selection_scores(self, scores_TE: torch.Tensor, logits_TE: torch.Tensor | None = None) -> torch.Tensor:
        selection_TE = logits_TE if self.space == "logits" and logits_TE is not None else scores_TE
        if self.training and torch.is_grad_enabled() and not recomputing():
            with torch.no_grad():
                self.candidate_sum_E += qb_candidate(selection_TE, self.beta_E, self.top_k)
                self.candidates += 1
            self._pending = True
        return selection_TE.float() - self.beta_E

    def bias_range(self) -> torch.Tensor:
        return self.beta_E.max() - self.beta_E.min()

    def step_end(self, counts_E: torch.Tensor) -> None:
        if not self._pending:
            return  # no training forward this step (known on the host: no device read per step)
        self._pending = False
        average_E = self.candidate_sum_E / self.candidates.clamp_min(1)
        average_E = all_reduce_sum(average_E.clone()) / data_parallel_size()  # each rank's average counts once
        beta_E = self.ema * self.beta_E + (1.0 - self.ema) * average_E
        self.beta_E.copy_(beta_E - beta_E.mean())
        self.candidate_sum_E.zero_()
        self.candidates.zero_()
