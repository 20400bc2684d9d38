"""One training run from a composed config: build, open the MLflow run, fit, validate, record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

from omegaconf import DictConfig, OmegaConf

from balance_lab import tracking
from balance_lab.errors import ConfigError


@dataclass
class RunResult:
    name: str
    run_id: str
    tracking_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    tokens_per_sec: float = 0.0
    wall_seconds: float = 0.0
    skipped: bool = False  # an identical run had already FINISHED (logger.skip_finished)


def run_tags(cfg: DictConfig, hash_: str, swept: Mapping[str, str]) -> dict[str, str]:
    tags = {tracking.TAG_CONFIG_HASH: hash_}
    if cfg.logger.get("sweep"):
        tags[tracking.TAG_SWEEP] = cfg.logger.sweep
    if cfg.logger.get("parent_run_id"):
        tags[tracking.TAG_PARENT] = cfg.logger.parent_run_id
    tags |= {f"{tracking.SWEPT_TAG_PREFIX}{k}": str(v) for k, v in swept.items()}
    return tags


def run_experiment(cfg: DictConfig, output_dir: str, swept: Mapping[str, str] | None = None) -> RunResult:
    """Train and record one run. `swept`: this run's values of the keys its sweep varies."""
    import lightning as L
    import torch

    from balance_lab.build import build, build_trainer
    from balance_lab.callbacks import FailAfterSteps, Progress, Throughput

    started = time.perf_counter()
    swept = dict(swept or {})
    quiet_framework_logs()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    uri = tracking.resolve_tracking_uri(cfg.logger.tracking_uri)
    hash_ = tracking.config_hash(resolved)
    if cfg.logger.get("skip_finished"):
        from mlflow.tracking import MlflowClient

        tracking.quiet_mlflow_logs()
        done = tracking.find_finished(MlflowClient(uri), cfg.logger.experiment_name, hash_)
        if done is not None:
            return RunResult(done.info.run_name, done.info.run_id, uri, dict(done.data.metrics), skipped=True)
    L.seed_everything(cfg.seed, verbose=False)
    try:
        built = build(cfg)  # may reject the config: no MLflow run exists yet
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from exc
    name = cfg.logger.run_name or tracking.run_name(resolved, swept)
    with tracking.open_run(uri, cfg.logger.experiment_name, name, run_tags(cfg, hash_, swept)) as run:
        run.log_params(tracking.flatten(resolved))
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        throughput = Throughput()
        callbacks = [throughput, Progress(leave=True)] if cfg.trainer.get("enable_progress_bar", True) else [throughput]
        if cfg.get("fail_after_steps") is not None:
            callbacks.append(FailAfterSteps(int(cfg.fail_after_steps)))
        trainer = build_trainer(cfg, tracking.lightning_logger(run), callbacks, output_dir)
        trainer.fit(built.module, datamodule=built.datamodule)
        if trainer.interrupted:
            raise KeyboardInterrupt
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if built.module.val_step != trainer.global_step:  # the final validation, unless fit just ran it
            trainer.validate(built.module, datamodule=built.datamodule, verbose=False)
            metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
        run.log_json(built.module.val_loads, "loads/val_loads.json")
    return RunResult(name, run.run_id, uri, metrics, throughput.tokens_per_sec, time.perf_counter() - started)


def quiet_framework_logs() -> None:
    """Lightning's INFO banners (GPU available..., tips) would drown the progress display."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    tracking.quiet_mlflow_logs()


def print_summary(result: RunResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if result.skipped:
        console.print(f"[yellow]skipped[/]: {result.name} already FINISHED with the same config as run {result.run_id}")
        return
    m = result.metrics
    table = Table(title=f"balance-lab run: {result.name}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("val perplexity", f"{m.get('val/ppl', float('nan')):.3f}"),
        ("val bits per byte", f"{m.get('val/bpb', float('nan')):.4f}"),
        ("MaxVio global (val)", f"{m.get('val/maxvio_global', float('nan')):.4f}"),
        ("MaxVio batch (last step)", f"{m.get('train/maxvio_batch', float('nan')):.4f}"),
        ("train tokens/s", f"{result.tokens_per_sec:,.0f}"),
        ("wall time", f"{result.wall_seconds:.1f} s"),
        ("MLflow run id", result.run_id),
        ("MLflow store", result.tracking_uri),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
