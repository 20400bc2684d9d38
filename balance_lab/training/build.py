"""The one place a run spec (config/spec.py) becomes objects: data, model, module, trainer.

What can reject the input (the spec, data too short for one sequence, Lightning's own check of its
arguments) raises ConfigError and comes before any MLflow run exists; building the model comes
after (training/experiment.py), so a bug in it is a FAILED run with its traceback, not "bad input".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from balance_lab.config.spec import RunSpec


@dataclass
class Built:
    datamodule: Any  # LMDataModule
    module: Any  # MoELMModule
    domains: list[str]


def as_spec(cfg_or_spec: DictConfig | RunSpec) -> RunSpec:
    """A spec as it is, a composed config checked into one (for tests and benchmarks that hold a config)."""
    from balance_lab.config.validation import check_config

    return cfg_or_spec if isinstance(cfg_or_spec, RunSpec) else check_config(cfg_or_spec)


def world_size(trainer: dict) -> int:
    devices = trainer.get("devices", 1)
    per_node = devices if isinstance(devices, int) and devices > 0 else 1
    return per_node * int(trainer.get("num_nodes") or 1)


def build_datamodule(spec: RunSpec | DictConfig):
    from balance_lab.data.datamodule import LMDataModule

    spec = as_spec(spec)
    data, source = spec.cfg.data, spec.source
    samples = (
        spec.max_steps * data.batch_size * spec.trainer.get("accumulate_grad_batches", 1) * world_size(spec.trainer)
    )
    return LMDataModule(
        source.splits(),
        source.domain_weights,
        spec.model.seq_len,
        data.batch_size,
        data.val_sequences,
        samples,
        order_seed(spec.cfg),
        source.bytes_per_token,
    )


def order_seed(cfg: DictConfig) -> int:
    """The seed of the training windows' order: data.order_seed, else the run's seed."""
    seed = cfg.data.get("order_seed")
    return cfg.seed if seed is None else seed


def build_model(spec: RunSpec | DictConfig):
    from balance_lab.balancing import build_balancer
    from balance_lab.model import MoELM
    from balance_lab.model.compiling import compile_blocks, wanted

    spec = as_spec(spec)
    model = MoELM(
        spec.model,
        make_balancer=lambda: build_balancer(
            spec.balance, spec.model.n_routed_experts, spec.max_steps, spec.model.top_k
        ),
        routing=spec.routing,
    )
    if wanted(spec.cfg.model.get("compile", False), spec.trainer.get("accelerator", "auto")):
        compile_blocks(model, mode=str(spec.cfg.model.get("compile_mode") or "default"))
    return model


def build_module(spec: RunSpec, datamodule):
    from balance_lab.diagnostics.args import DiagnosticsArgs
    from balance_lab.training.lit_module import MoELMModule

    return MoELMModule(
        build_model(spec),
        spec.optim,
        total_steps=spec.max_steps,
        domains=datamodule.domains,
        bytes_per_token=datamodule.bytes_per_token,
        diagnostics=spec.diagnostics or DiagnosticsArgs(),
    )


def build(spec: RunSpec | DictConfig) -> Built:
    """Everything at once (tests, benchmarks): raises ConfigError for bad input."""
    spec = as_spec(spec)
    check_trainer_arguments(spec)
    datamodule = build_datamodule(spec)
    return Built(datamodule, build_module(spec, datamodule), datamodule.domains)


def check_trainer_arguments(spec: RunSpec) -> None:
    """Lightning checks its arguments together (strategy x accelerator x precision x devices) when
    a Trainer is constructed: construct one here, before the MLflow run exists, and say what it said."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from balance_lab.errors import ConfigError

    try:
        build_trainer(spec, logger=False, callbacks=[], default_root_dir=".", enable_checkpointing=False)
    except (ValueError, TypeError, MisconfigurationException) as exc:
        raise ConfigError(f"trainer: {str(exc).strip().splitlines()[0]}") from exc


def build_trainer(spec: RunSpec | DictConfig, logger, callbacks: list, default_root_dir: str, **override):
    import lightning as L

    from balance_lab.training.checkpoint_io import DirectCheckpointIO, uses_checkpoint_io

    kwargs = as_spec(spec).trainer | override
    if "plugins" not in kwargs and uses_checkpoint_io(kwargs.get("strategy", "auto")):
        override = {**override, "plugins": [DirectCheckpointIO()]}  # checkpoints written once, in place
    return L.Trainer(
        **(as_spec(spec).trainer | override), logger=logger, callbacks=callbacks, default_root_dir=default_root_dir
    )
