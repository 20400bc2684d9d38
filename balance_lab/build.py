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
    from balance_lab.data.builtin import load_builtin_corpus
    from balance_lab.data.datamodule import LMDataModule
    from balance_lab.data.tokenizer import ByteTokenizer

    data = cfg.data
    weights = dict(data.domains)
    splits = load_builtin_corpus(data.cache_dir, data.val_fraction, data.math_documents, data.corpus_seed)
    samples = cfg.trainer.max_steps * data.batch_size * cfg.trainer.get("accumulate_grad_batches", 1) * world_size(cfg.trainer)
    return LMDataModule({d: splits[d] for d in weights}, weights, cfg.model.seq_len, data.batch_size,
                        data.val_sequences, samples, cfg.seed, ByteTokenizer().bytes_per_token(None))


def build_model(cfg: DictConfig):
    from balance_lab.balancing import build_balancer
    from balance_lab.model import ModelArgs, MoELM

    args = ModelArgs.from_config(cfg.model)
    balance = OmegaConf.to_container(cfg.balance, resolve=True)
    return MoELM(args, make_balancer=lambda: build_balancer(balance, args.n_routed_experts))


def validate(cfg: DictConfig) -> None:
    """The checks that need no data and no memory; raises ValueError naming the bad key."""
    from balance_lab.balancing import build_balancer
    from balance_lab.data.builtin import DOMAINS
    from balance_lab.model import ModelArgs

    if cfg.trainer.max_steps <= 0:
        raise ValueError(f"trainer.max_steps={cfg.trainer.max_steps}: must be > 0")
    if cfg.model.vocab_size < 256:
        raise ValueError(f"model.vocab_size={cfg.model.vocab_size}: the byte-level tokenizer needs 256")
    args = ModelArgs.from_config(cfg.model)
    build_balancer(OmegaConf.to_container(cfg.balance, resolve=True), args.n_routed_experts)
    weights = dict(cfg.data.domains)
    unknown = sorted(set(weights) - set(DOMAINS))
    if unknown:
        raise ValueError(f"data.domains: unknown domain(s) {', '.join(unknown)}; the built-in corpus has {', '.join(DOMAINS)}")
    if not weights or any(w <= 0 for w in weights.values()):
        raise ValueError(f"data.domains={weights}: every weight must be > 0 and at least one domain is needed")


def build(cfg: DictConfig) -> Built:
    from balance_lab.lit_module import MoELMModule

    validate(cfg)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    module = MoELMModule(model, cfg.optim, total_steps=cfg.trainer.max_steps, domains=datamodule.domains,
                         bytes_per_token=datamodule.bytes_per_token)
    return Built(datamodule, module, datamodule.domains)


def build_trainer(cfg: DictConfig, logger, callbacks: list, default_root_dir: str):
    import lightning as L

    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    # A run shorter than the logging interval would record no training metric at all.
    kwargs["log_every_n_steps"] = max(1, min(kwargs.get("log_every_n_steps", 50), kwargs["max_steps"]))
    return L.Trainer(**kwargs, logger=logger, callbacks=callbacks, default_root_dir=default_root_dir)
