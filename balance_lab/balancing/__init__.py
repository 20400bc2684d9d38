"""Balancing methods, built from the `balance` config group.

A `balance` config is a flat set of knobs (so sweeps override them by name); each knob that is
switched on adds a term to the method, so combinations need no new code:

    update_rate > 0  ->  LossFreeBias(update_rate, rule, bias)
    alpha > 0        ->  AuxLoss(alpha, scope)
    z_loss > 0       ->  RouterZLoss(z_loss)

The subject of study, with model/ and data/: may import the shared leaves and model/ (the
Routing it reads); nothing of the store, config, training or above.
"""

from importlib import import_module

# Exports load lazily, so `balance_lab.balancing.knobs` (pure Python) can be checked without torch.
_EXPORTS = {
    "Balancer": "base",
    "BalancingTerm": "base",
    "AuxLoss": "aux_loss",
    "RouterZLoss": "aux_loss",
    "LossFreeBias": "loss_free",
    "build_balancer": "factory",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
