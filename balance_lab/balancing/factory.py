"""build_balancer: the `balance` config -> one layer's Balancer (see the package docstring)."""

from __future__ import annotations

from typing import Any, Mapping

from balance_lab.balancing.aux_loss import AuxLoss, RouterZLoss
from balance_lab.balancing.base import Balancer, BalancingTerm
from balance_lab.balancing.knobs import check_balance
from balance_lab.balancing.loss_free import LossFreeBias
from balance_lab.balancing.orthogonality import OrthogonalityLoss
from balance_lab.balancing.quantile import QuantileBalancing


def build_balancer(
    cfg: Mapping[str, Any], n_experts: int, horizon: int | None = None, top_k: int | None = None
) -> Balancer:
    """One layer's Balancer from the `balance` config; `horizon` (trainer.max_steps) for the loss-free
    schedules, `top_k` for quantile balancing. Raises ValueError naming a bad knob."""
    check_balance(cfg)
    terms: list[BalancingTerm] = []
    if cfg.get("update_rate", 0.0) > 0:
        terms.append(
            LossFreeBias(
                n_experts,
                float(cfg["update_rate"]),
                cfg.get("rule", "sign"),
                cfg.get("bias", "additive"),
                bool(cfg.get("center", False)),
                momentum=float(cfg.get("momentum", 0.0)),
                bias_cap=None if cfg.get("bias_cap") is None else float(cfg["bias_cap"]),
                warmup_steps=int(cfg.get("warmup_steps", 0)),
                schedule=cfg.get("schedule", "constant"),
                schedule_end=float(cfg.get("schedule_end", 1.0)),
                horizon=horizon,
            )
        )
    if cfg.get("quantile_balancing"):
        if top_k is None:
            raise ValueError("quantile balancing needs model.top_k")
        terms.append(
            QuantileBalancing(
                n_experts, top_k, float(cfg.get("quantile_ema", 0.0)), cfg.get("quantile_space", "logits")
            )
        )
    if cfg.get("alpha", 0.0) > 0:
        terms.append(AuxLoss(float(cfg["alpha"]), cfg.get("scope", "micro"), n_experts))
    if cfg.get("z_loss", 0.0) > 0:
        terms.append(RouterZLoss(float(cfg["z_loss"])))
    if cfg.get("orthogonality", 0.0) > 0:
        terms.append(OrthogonalityLoss(float(cfg["orthogonality"])))
    return Balancer(terms)
