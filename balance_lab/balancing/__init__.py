"""Balancing methods, built from the `balance` config group.

A `balance` config is a flat set of knobs (so sweeps override them by name); each knob that is
switched on adds a term to the method, so combinations need no new code:

    update_rate > 0  ->  LossFreeBias(update_rate, rule, bias)
    alpha > 0        ->  AuxLoss(alpha, scope)
    z_loss > 0       ->  RouterZLoss(z_loss)
"""

from __future__ import annotations

from typing import Any, Mapping

from balance_lab.balancing.aux_loss import AUX_SCOPES, AuxLoss, RouterZLoss
from balance_lab.balancing.base import Balancer, BalancingTerm
from balance_lab.balancing.loss_free import BIAS_TYPES, RULES, LossFreeBias

__all__ = ["Balancer", "BalancingTerm", "AuxLoss", "RouterZLoss", "LossFreeBias", "build_balancer"]

_KNOBS = ("name", "update_rate", "rule", "bias", "alpha", "scope", "z_loss")


def build_balancer(cfg: Mapping[str, Any], n_experts: int) -> Balancer:
    """One layer's Balancer from the `balance` config. Raises ValueError naming a bad knob."""
    unknown = sorted(set(cfg) - set(_KNOBS))
    if unknown:
        raise ValueError(f"unknown balance key(s) {', '.join(unknown)}: valid keys are {', '.join(_KNOBS)}")
    # Choices are checked even when their term is off, so a typo never passes silently.
    for knob, choices in (("rule", RULES), ("bias", BIAS_TYPES), ("scope", AUX_SCOPES)):
        if knob in cfg and cfg[knob] not in choices:
            raise ValueError(f"balance.{knob}={cfg[knob]!r}: choose one of {', '.join(choices)}")
    for knob in ("update_rate", "alpha", "z_loss"):
        if float(cfg.get(knob, 0.0)) < 0:
            raise ValueError(f"balance.{knob}={cfg[knob]}: must be >= 0 (0 switches it off)")
    terms: list[BalancingTerm] = []
    if cfg.get("update_rate", 0.0) > 0:
        terms.append(LossFreeBias(n_experts, float(cfg["update_rate"]), cfg.get("rule", "sign"), cfg.get("bias", "additive")))
    if cfg.get("alpha", 0.0) > 0:
        terms.append(AuxLoss(float(cfg["alpha"]), cfg.get("scope", "micro"), n_experts))
    if cfg.get("z_loss", 0.0) > 0:
        terms.append(RouterZLoss(float(cfg["z_loss"])))
    return Balancer(terms)
