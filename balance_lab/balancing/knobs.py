"""The `balance` config's knobs and their valid values (no torch: the CLI checks them instantly)."""

from __future__ import annotations

from typing import Any, Mapping

KNOBS = ("name", "update_rate", "rule", "bias", "alpha", "scope", "z_loss")
RULES = ("sign", "raw")  # loss-free update: sign of the load error, or the error relative to the mean load
BIAS_TYPES = ("additive", "multiplicative")  # loss-free bias: s + b, or s * b
AUX_SCOPES = ("micro", "sequence", "global")  # where the aux loss counts tokens


def check_balance(cfg: Mapping[str, Any]) -> None:
    """Raises ValueError naming a bad knob. Choices are checked even when their term is off, so a
    typo never passes silently."""
    unknown = sorted(set(cfg) - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown balance key(s) {', '.join(unknown)}: valid keys are {', '.join(KNOBS)}")
    for knob, choices in (("rule", RULES), ("bias", BIAS_TYPES), ("scope", AUX_SCOPES)):
        if knob in cfg and cfg[knob] not in choices:
            raise ValueError(f"balance.{knob}={cfg[knob]!r}: choose one of {', '.join(choices)}")
    for knob in ("update_rate", "alpha", "z_loss"):
        value = cfg.get(knob, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"balance.{knob}={value!r}: must be a number >= 0 (0 switches it off)")
        if value < 0:
            raise ValueError(f"balance.{knob}={value}: must be >= 0 (0 switches it off)")
    if cfg.get("name") and str(cfg["name"]).startswith("loss_free") and cfg.get("update_rate", 0) <= 0:
        raise ValueError(f"balance.update_rate={cfg.get('update_rate')}: {cfg['name']} needs an update rate u > 0 "
                         "(u = 0 is balance=none)")
