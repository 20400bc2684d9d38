"""build_balancer: the `balance` config -> one layer's Balancer (see the package docstring)."""

from __future__ import annotations

from typing import Any, Mapping

from balance_lab.balancing.aux_loss import AuxLoss, RouterZLoss
from balance_lab.balancing.base import Balancer, BalancingTerm
from balance_lab.balancing.knobs import check_balance
from balance_lab.balancing.loss_free import LossFreeBias


def build_balancer(cfg: Mapping[str, Any], n_experts: int) -> Balancer:
    """One layer's Balancer from the `balance` config. Raises ValueError naming a bad knob."""
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
            )
        )
    if cfg.get("alpha", 0.0) > 0:
        terms.append(AuxLoss(float(cfg["alpha"]), cfg.get("scope", "micro"), n_experts))
    if cfg.get("z_loss", 0.0) > 0:
        terms.append(RouterZLoss(float(cfg["z_loss"])))
    return Balancer(terms)
