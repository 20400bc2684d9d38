"""A run's name: what it trains, in a few words (`loss_free-u1e-2-sign-add-tiny-s0`)."""

from __future__ import annotations

from typing import Any, Mapping


def _fmt(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def run_name(cfg: Mapping[str, Any], swept: Mapping[str, str] | None = None) -> str:
    """A name that says what the run is, e.g. `loss_free-u1e-2-sign-add-tiny-s0`; a sweep's other
    swept keys are appended (`...-s0-score_func=softmax`) so names stay unique within a grid."""
    balance, parts = cfg["balance"], [cfg["balance"]["name"]]
    if balance.get("update_rate", 0) > 0:
        parts += [f"u{_fmt(balance['update_rate'])}", balance.get("rule", "sign"), balance.get("bias", "additive")[:3]]
        parts += ["centred"] if balance.get("center") else []
    if balance.get("alpha", 0) > 0:
        parts += [f"a{_fmt(balance['alpha'])}", balance.get("scope", "micro")]
    if balance.get("z_loss", 0) > 0:
        parts.append(f"z{_fmt(balance['z_loss'])}")
    parts += _routing_parts(balance)
    parts += [cfg["model"]["name"], f"s{cfg['seed']}"]
    for key, value in (swept or {}).items():
        if key not in ("balance", "model", "seed") and not key.startswith("balance."):  # those are in the name
            parts.append(f"{key.split('.')[-1]}={value}")
    return "-".join(str(p) for p in parts)


def _routing_parts(balance: Mapping[str, Any]) -> list[str]:
    """Name parts of the routing knobs that are switched on (model/selection.py, model/capacity.py)."""
    parts = []
    if balance.get("sinkhorn_iters", 0) > 0:
        parts.append(f"sinkhorn{balance['sinkhorn_iters']}")
    if balance.get("n_groups", 1) > 1:
        parts.append(f"groups{balance.get('group_topk', 1)}of{balance['n_groups']}")
    if balance.get("jitter", 0) > 0:
        parts.append(f"jitter{_fmt(balance['jitter'])}")
    if balance.get("capacity_factor") is not None:
        parts.append(f"cap{balance['capacity_factor']:g}-{balance.get('drop_policy', 'probs')}")
        parts += ["renorm"] if balance.get("renorm_kept") else []
    return parts
