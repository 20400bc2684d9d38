"""build(cfg): the one place a composed config becomes objects (data, model, module, trainer).

Everything that can reject the config happens here, before any MLflow run exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass
class Built:
    datamodule: Any  # LMDataModule
    module: Any  # MoELMModule
    domains: list[str]


def world_size(trainer_cfg: DictConfig) -> int:
    devices = trainer_cfg.get("devices", 1)
    per_node = devices if isinstance(devices, int) and devices > 0 else 1
    return per_node * int(trainer_cfg.get("num_nodes", 1))


def build_datamodule(cfg: DictConfig):
    from balance_lab.data.datamodule import LMDataModule
    from balance_lab.data.sources import source_for

    data = cfg.data
    source = source_for(data)
    samples = cfg.trainer.max_steps * data.batch_size * cfg.trainer.get("accumulate_grad_batches", 1) * world_size(cfg.trainer)
    return LMDataModule(source.splits(), source.domain_weights, cfg.model.seq_len, data.batch_size,
                        data.val_sequences, samples, order_seed(cfg), source.bytes_per_token)


def order_seed(cfg: DictConfig) -> int:
    """The seed of the training windows' order: data.order_seed, else the run's seed."""
    seed = cfg.data.get("order_seed")
    return cfg.seed if seed is None else seed


def build_model(cfg: DictConfig):
    from balance_lab.balancing import build_balancer
    from balance_lab.model import ModelArgs, MoELM, RoutingArgs
    from balance_lab.model.compiling import compile_blocks, wanted

    args = ModelArgs.from_config(cfg.model)
    balance = OmegaConf.to_container(cfg.balance, resolve=True)
    model = MoELM(args, make_balancer=lambda: build_balancer(balance, args.n_routed_experts),
                  routing=RoutingArgs.from_config(balance))
    if wanted(cfg.model.get("compile", False), cfg.trainer.accelerator):
        compile_blocks(model, mode=str(cfg.model.get("compile_mode") or "default"))
    return model


def build(cfg: DictConfig) -> Built:
    """Raises ConfigError (bad config) or ValueError (data that cannot make one batch)."""
    from balance_lab.training.lit_module import MoELMModule
    from balance_lab.config.validation import check_config

    check_config(cfg)
    check_trainer_arguments(cfg)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    module = MoELMModule(model, cfg.optim, total_steps=cfg.trainer.max_steps, domains=datamodule.domains,
                         bytes_per_token=datamodule.bytes_per_token)
    return Built(datamodule, module, datamodule.domains)


def check_trainer_arguments(cfg: DictConfig) -> None:
    """Lightning checks its arguments together (strategy x accelerator x precision x devices) when
    a Trainer is constructed: construct one here, before the MLflow run exists, and say what it said."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from balance_lab.errors import ConfigError

    try:
        build_trainer(cfg, logger=False, callbacks=[], default_root_dir=".", enable_checkpointing=False)
    except (ValueError, TypeError, MisconfigurationException) as exc:
        raise ConfigError(f"trainer: {str(exc).strip().splitlines()[0]}") from exc


def build_trainer(cfg: DictConfig, logger, callbacks: list, default_root_dir: str, **override):
    import lightning as L

    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True) | override
    # A run shorter than the logging interval would record no training metric at all.
    kwargs["log_every_n_steps"] = max(1, min(kwargs.get("log_every_n_steps", 50), kwargs["max_steps"]))
    # Lightning rejects a validation interval longer than the run; the final validation runs anyway.
    train_batches = kwargs["max_steps"] * kwargs.get("accumulate_grad_batches", 1)
    if isinstance(kwargs.get("val_check_interval"), int):
        kwargs["val_check_interval"] = min(kwargs["val_check_interval"], train_batches)
    # The datamodule's samplers split items across ranks (see RankSlice) and resume mid-epoch.
    kwargs.setdefault("use_distributed_sampler", False)
    return L.Trainer(**kwargs, logger=logger, callbacks=callbacks, default_root_dir=default_root_dir)
