"""A run spec: a composed config checked and parsed once (config/validation.py: check_config), valid
once built, and what build() turns into objects. The CLI's check and the training process's build
read the same spec, so nothing is parsed twice or checked differently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class RunSpec:
    cfg: DictConfig  # the composed config (params, the config hash and run names read it)
    model: Any  # model.args.ModelArgs
    routing: Any  # model.args.RoutingArgs
    balance: dict  # the balance knobs, resolved (balancing.build_balancer's input)
    source: Any  # data.sources.DataSource: where the text comes from
    trainer: dict  # Lightning Trainer arguments (trainer_arguments)
    diagnostics: Any = None  # diagnostics.args.DiagnosticsArgs: what the run records about its routing

    @property
    def optim(self) -> DictConfig:
        return self.cfg.optim

    @property
    def max_steps(self) -> int:
        return int(self.trainer["max_steps"])


def trainer_arguments(trainer_cfg: DictConfig) -> dict:
    """conf/trainer's values as Lightning Trainer arguments, with two adjustments."""
    kwargs = OmegaConf.to_container(trainer_cfg, resolve=True)
    # A run shorter than the logging interval would record no training metric at all.
    kwargs["log_every_n_steps"] = max(1, min(kwargs.get("log_every_n_steps", 50), kwargs["max_steps"]))
    # Lightning rejects a validation interval longer than the run; the final validation runs anyway.
    train_batches = kwargs["max_steps"] * kwargs.get("accumulate_grad_batches", 1)
    if isinstance(kwargs.get("val_check_interval"), int):
        kwargs["val_check_interval"] = min(kwargs["val_check_interval"], train_batches)
    # The datamodule's samplers split items across ranks (see RankSlice) and resume mid-epoch.
    kwargs.setdefault("use_distributed_sampler", False)
    return kwargs
