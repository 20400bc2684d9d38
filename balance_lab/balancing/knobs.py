"""The `balance` config's knobs and their valid values (no torch: the CLI checks them instantly)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from balance_lab.model.args import DROP_POLICIES, RoutingArgs

# The Balancer's knobs (balancing/), then the routers' (model/args.py: RoutingArgs, one field per knob).
BALANCER_KNOBS = (
    "name",
    "update_rate",
    "rule",
    "bias",
    "center",
    "alpha",
    "scope",
    "z_loss",
    "momentum",
    "bias_cap",
    "warmup_steps",
    "schedule",
    "schedule_end",
    "orthogonality",
    "quantile_balancing",
    "quantile_ema",
    "quantile_space",
)
ROUTING_OFF: dict[str, Any] = {f.name: f.default for f in fields(RoutingArgs)}  # each at the value that switches it off
KNOBS = BALANCER_KNOBS + tuple(ROUTING_OFF)
RULES = ("sign", "raw")  # loss-free update: sign of the load error, or the error relative to the mean load
BIAS_TYPES = ("additive", "multiplicative")  # loss-free bias: s + b, or s * b
AUX_SCOPES = ("micro", "sequence", "global")  # where the aux loss counts tokens
SWITCHES = ("center", "renorm_kept", "force_balance", "quantile_balancing")  # true | false
QUANTILE_SPACES = ("logits", "scores")  # what quantile balancing's bias is added to (balancing/quantile.py)
# loss-free update-rate schedules over the run (u_t = u * factor(t / max_steps)); off_after: u until
# schedule_end of the run, then 0 (GLM-4.5's "u for most of training, then 0")
SCHEDULES = ("constant", "cosine", "linear", "off_after")


def check_balance(cfg: Mapping[str, Any]) -> None:
    """Raises ValueError naming a bad knob. Choices are checked even when their term is off, so a
    typo never passes silently."""
    unknown = sorted(set(cfg) - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown balance key(s) {', '.join(unknown)}: valid keys are {', '.join(KNOBS)}")
    for knob, choices in (
        ("rule", RULES),
        ("bias", BIAS_TYPES),
        ("scope", AUX_SCOPES),
        ("drop_policy", DROP_POLICIES),
        ("schedule", SCHEDULES),
        ("quantile_space", QUANTILE_SPACES),
    ):
        if knob in cfg and cfg[knob] not in choices:
            raise ValueError(f"balance.{knob}={cfg[knob]!r}: choose one of {', '.join(choices)}")
    for knob in SWITCHES:
        if knob in cfg and not isinstance(cfg[knob], bool):
            raise ValueError(f"balance.{knob}={cfg[knob]!r}: choose one of true, false")
    for knob in ("update_rate", "alpha", "z_loss", "jitter", "orthogonality"):
        _check_number(knob, cfg.get(knob, 0.0), "a number >= 0 (0 switches it off)")
    _check_number("momentum", cfg.get("momentum", 0.0), "a number in [0, 1) (0: no smoothing of the loads)")
    if cfg.get("momentum", 0.0) >= 1:
        raise ValueError(f"balance.momentum={cfg['momentum']}: must be below 1 (the loads' EMA would never move)")
    _check_number("warmup_steps", cfg.get("warmup_steps", 0), "an integer >= 0", integer=True)
    _check_number("schedule_end", cfg.get("schedule_end", 1.0), "a number in (0, 1]", low=0, low_open=True)
    if cfg.get("schedule_end", 1.0) > 1:
        raise ValueError(f"balance.schedule_end={cfg['schedule_end']}: must be at most 1 (a fraction of the run)")
    if cfg.get("bias_cap") is not None:
        _check_number("bias_cap", cfg["bias_cap"], "a number > 0, or null for no cap", low=0, low_open=True)
    for knob, what in (
        ("sinkhorn_iters", "an integer >= 0 (0 switches Sinkhorn selection off)"),
        ("n_groups", "an integer >= 1 (1 = no groups)"),
        ("group_topk", "an integer >= 1"),
    ):
        _check_number(knob, cfg.get(knob, 1), what, integer=True, low=0 if knob == "sinkhorn_iters" else 1)
    if cfg.get("jitter", 0.0) >= 1:
        raise ValueError(f"balance.jitter={cfg['jitter']}: must be below 1 (the noise is U(1 - eps, 1 + eps))")
    capacity = cfg.get("capacity_factor")
    if capacity is not None:
        _check_number("capacity_factor", capacity, "a number > 0, or null for no dropping", low=0, low_open=True)
    if cfg.get("name") and str(cfg["name"]).startswith("loss_free") and cfg.get("update_rate", 0) <= 0:
        raise ValueError(
            f"balance.update_rate={cfg.get('update_rate')}: {cfg['name']} needs an update rate u > 0 "
            "(u = 0 is balance=none)"
        )
    _check_number("quantile_ema", cfg.get("quantile_ema", 0.0), "a number in [0, 1)")
    if cfg.get("quantile_ema", 0.0) >= 1:
        raise ValueError(f"balance.quantile_ema={cfg['quantile_ema']}: must be below 1 (beta would never move)")
    if cfg.get("quantile_balancing"):  # Megatron refuses the aux loss with it; loss-free would fight over the bias
        for knob, off in (
            ("alpha", 0),
            ("update_rate", 0),
            ("force_balance", False),
            ("sinkhorn_iters", 0),
            ("n_groups", 1),
        ):
            if cfg.get(knob, off) != off:
                raise ValueError(
                    f"balance.{knob}={cfg[knob]} with balance.quantile_balancing=true: quantile balancing "
                    f"balances through its own bias; set balance.{knob}={str(off).lower()}"
                )
    if cfg.get("force_balance"):
        for knob, off in (("update_rate", 0), ("sinkhorn_iters", 0), ("n_groups", 1)):
            if cfg.get(knob, off) != off:
                raise ValueError(
                    f"balance.{knob}={cfg[knob]} with balance.force_balance=true: forced balance "
                    f"chooses experts at random, so it has nothing to act on; set balance.{knob}={off}"
                )
    if cfg.get("sinkhorn_iters", 0) > 0:
        for knob in ("update_rate", "alpha"):  # Megatron-Core refuses the aux loss with Sinkhorn too
            if cfg.get(knob, 0) > 0:
                raise ValueError(
                    f"balance.{knob}={cfg[knob]} with balance.sinkhorn_iters={cfg['sinkhorn_iters']}: "
                    f"Sinkhorn selection balances by itself; set balance.{knob}=0"
                )


def _check_number(
    knob: str, value: Any, what: str, integer: bool = False, low: float = 0.0, low_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValueError(f"balance.{knob}={value!r}: must be {what}")
    if value < low or (low_open and value == low):
        raise ValueError(
            f"balance.{knob}={value}: must be {what.removeprefix('a number ').removeprefix('an integer ')}"
        )


# Knobs added after runs were first recorded, at the value that switches each off. A run recorded
# before a knob existed trained as if the knob had this value, so a run's identity (its config
# hash, the report's configurations) leaves such a knob out at this value: re-running an old
# sweep still finds its finished runs, and old and new runs of one configuration stay together.
ADDED_OFF: dict[str, Any] = {
    "center": False,
    "momentum": 0.0,
    "bias_cap": None,
    "warmup_steps": 0,
    "schedule": "constant",
    "schedule_end": 1.0,
    "orthogonality": 0.0,
    "quantile_balancing": False,
    "quantile_ema": 0.0,
    "quantile_space": "logits",
    **ROUTING_OFF,
}


def is_added_off(knob: str, value: Any) -> bool:
    """True where `knob` is an ADDED_OFF knob at its off value (as configured, or as an MLflow param string)."""
    if knob not in ADDED_OFF:
        return False
    off = ADDED_OFF[knob]
    if isinstance(value, str):  # an MLflow param: "None", "False", "0.0", "1", "probs"
        return value == str(off) or (isinstance(off, float) and _as_float(value) == off)
    if off is None or isinstance(off, bool):
        return value is off
    return value == off and not isinstance(value, bool)


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
