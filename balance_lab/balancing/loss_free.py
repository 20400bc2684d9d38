"""Loss-Free Balancing (Wang et al., arXiv 2408.15664): a per-expert bias on the selection scores.

Top-K is taken on s + b (additive) or s * b (multiplicative); the gates stay the unbiased s.
After each optimizer step, with c_i the tokens expert i received in that step (all micro-batches,
all data-parallel ranks), e_i = mean(c) - c_i and b_i += u * sign(e_i) (rule=sign) or
b_i += u * e_i / mean(c) (rule=raw, the error relative to the mean load so u is free of the
batch size). An under-used expert's bias rises.

center=true subtracts the mean of each step's update (torchtitan does), so the biases keep a
zero mean. Top-K of s + b does not change when every b moves by the same amount, so for the
additive bias this changes only the biases' drift, not one routing decision (up to rounding);
for the multiplicative bias it changes the scale the bias acts on.
"""

from __future__ import annotations

import torch

from balance_lab.balancing.base import BalancingTerm
from balance_lab.balancing.knobs import BIAS_TYPES, RULES


class LossFreeBias(BalancingTerm):
    def __init__(
        self, n_experts: int, update_rate: float, rule: str = "sign", bias: str = "additive", center: bool = False
    ):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"balance.rule={rule!r}: choose one of {', '.join(RULES)}")
        if bias not in BIAS_TYPES:
            raise ValueError(f"balance.bias={bias!r}: choose one of {', '.join(BIAS_TYPES)}")
        if update_rate <= 0:
            raise ValueError(f"balance.update_rate={update_rate}: must be > 0")
        self.update_rate = update_rate
        self.rule = rule
        self.center = center
        self.multiplicative = bias == "multiplicative"
        # fp32 always: bias steps of u=1e-3 vanish in bf16 (8 bits of mantissa) once |b| > ~0.25.
        self.register_buffer("bias_E", torch.full((n_experts,), 1.0 if self.multiplicative else 0.0))

    def _apply(self, fn, recurse=True):
        # Module-wide casts (model.to(bfloat16), precision="bf16-true") must not reach the bias.
        super()._apply(fn, recurse)
        if self.bias_E.dtype != torch.float32:
            self.bias_E = self.bias_E.float()
        return self

    def selection_scores(self, scores_TE: torch.Tensor) -> torch.Tensor:
        if self.multiplicative:
            return scores_TE * self.bias_E
        return scores_TE + self.bias_E

    def bias_range(self) -> torch.Tensor:
        return self.bias_E.max() - self.bias_E.min()

    def step_end(self, counts_E: torch.Tensor) -> None:
        load_E = counts_E.to(torch.float64)  # exact for any realistic token count
        error_E = load_E.mean() - load_E
        if self.rule == "sign":
            delta_E = error_E.sign()
        else:
            delta_E = error_E / load_E.mean().clamp_min(1.0)
        if self.center:
            delta_E = delta_E - delta_E.mean()
        self.bias_E += (self.update_rate * delta_E).to(self.bias_E.dtype)
