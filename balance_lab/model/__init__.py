"""The MoE language model: args -> router -> experts -> MoE layer -> LM.

Exports load lazily, so `balance_lab.model.args` (pure Python) can be checked without torch.
The subject of study, with balancing/ and data/: may import the shared leaves and balancing/
(the Balancer the router consults), nothing of the store, config, training or above.
"""

from importlib import import_module

_EXPORTS = {
    "ModelArgs": "args",
    "RoutingArgs": "args",
    "MoELM": "lm",
    "LMOutput": "lm",
    "ParamCounts": "params",
    "count_params": "params",
    "train_flops_per_token": "params",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
