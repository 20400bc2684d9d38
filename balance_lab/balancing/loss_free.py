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

The 2025-26 refinements (docs/mechanisms.md, "Loss-free refinements"): momentum m > 0 replaces the
step's counts by their EMA, load <- m * load + (1 - m) * counts, before the error is taken (Axolotl's
aux_free_router smooths the loads so); bias_cap clamps every bias to [-cap, cap] after the update;
warmup_steps leaves the first steps without an update; the schedule scales u by factor(t / T) at
optimizer step t of T = trainer.max_steps: constant 1, cosine (1 + cos(pi t / T)) / 2, linear
1 - t / T, off_after 1 until schedule_end * T and 0 after. The step count and the EMA are buffers,
so a resumed run continues both.
"""

from __future__ import annotations

import math

import torch

from balance_lab.balancing.base import BalancingTerm
from balance_lab.balancing.knobs import BIAS_TYPES, RULES, SCHEDULES


class LossFreeBias(BalancingTerm):
    def __init__(
        self,
        n_experts: int,
        update_rate: float,
        rule: str = "sign",
        bias: str = "additive",
        center: bool = False,
        momentum: float = 0.0,
        bias_cap: float | None = None,
        warmup_steps: int = 0,
        schedule: str = "constant",
        schedule_end: float = 1.0,
        horizon: int | None = None,
    ):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"balance.rule={rule!r}: choose one of {', '.join(RULES)}")
        if bias not in BIAS_TYPES:
            raise ValueError(f"balance.bias={bias!r}: choose one of {', '.join(BIAS_TYPES)}")
        if update_rate <= 0:
            raise ValueError(f"balance.update_rate={update_rate}: must be > 0")
        if schedule not in SCHEDULES:
            raise ValueError(f"balance.schedule={schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if schedule != "constant" and not horizon:
            raise ValueError(f"balance.schedule={schedule}: needs the run's length (trainer.max_steps)")
        self.momentum, self.bias_cap, self.warmup_steps = momentum, bias_cap, warmup_steps
        self.schedule, self.schedule_end, self.horizon = schedule, schedule_end, horizon
        self.update_rate = update_rate
        self.rule = rule
        self.center = center
        self.multiplicative = bias == "multiplicative"
        # fp32 always: bias steps of u=1e-3 vanish in bf16 (8 bits of mantissa) once |b| > ~0.25.
        self.register_buffer("bias_E", torch.full((n_experts,), 1.0 if self.multiplicative else 0.0))
        if momentum > 0 or warmup_steps > 0 or schedule != "constant":  # state only where a knob needs it: old
            self.register_buffer("step", torch.zeros((), dtype=torch.int64))  # checkpoints load as they were
            self.register_buffer("load_E", torch.zeros(n_experts, dtype=torch.float64))

    def _apply(self, fn, recurse=True):
        # Module-wide casts (model.to(bfloat16), precision="bf16-true") must not reach the bias or the loads.
        super()._apply(fn, recurse)
        if self.bias_E.dtype != torch.float32:
            self.bias_E = self.bias_E.float()
        if hasattr(self, "load_E") and self.load_E.dtype != torch.float64:
            self.load_E = self.load_E.double()
        return self

    def selection_scores(self, scores_TE: torch.Tensor, logits_TE: torch.Tensor | None = None) -> torch.Tensor:
        if self.multiplicative:
            return scores_TE * self.bias_E
        return scores_TE + self.bias_E

    def bias_range(self) -> torch.Tensor:
        return self.bias_E.max() - self.bias_E.min()

    def rate_at(self, step: int) -> float:
        """u at optimizer step `step` (1 = the first update): 0 during the warm-up, else u x the schedule."""
        if step <= self.warmup_steps:
            return 0.0
        t = min(step / self.horizon, 1.0) if self.horizon else 0.0
        factor = {
            "constant": 1.0,
            "cosine": (1 + math.cos(math.pi * t)) / 2,
            "linear": 1.0 - t,
            "off_after": 1.0 if t <= self.schedule_end else 0.0,
        }[self.schedule]
        return self.update_rate * factor

    def step_end(self, counts_E: torch.Tensor) -> None:
        load_E = counts_E.to(torch.float64)  # exact for any realistic token count
        rate = self.update_rate
        if hasattr(self, "step"):
            self.step += 1
            if self.momentum > 0:
                first = bool(self.step == 1)  # the EMA starts at the first step's loads, not at 0
                self.load_E.copy_(load_E if first else self.momentum * self.load_E + (1 - self.momentum) * load_E)
                load_E = self.load_E
            rate = self.rate_at(int(self.step))
            if rate == 0.0:
                return
        error_E = load_E.mean() - load_E
        if self.rule == "sign":
            delta_E = error_E.sign()
        else:
            delta_E = error_E / load_E.mean().clamp_min(1.0)
        if self.center:
            delta_E = delta_E - delta_E.mean()
        self.bias_E += (rate * delta_E).to(self.bias_E.dtype)
        if self.bias_cap is not None:
            self.bias_E.clamp_(-self.bias_cap, self.bias_cap)
