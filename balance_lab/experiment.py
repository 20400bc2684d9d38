"""One training run from a composed config: build, open the MLflow run, fit, validate, record."""

from __future__ import annotations

import time
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from balance_lab import tracking
from balance_lab.errors import ConfigError


@dataclass
class RunResult:
    run_id: str
    tracking_uri: str
    metrics: dict[str, float]
    tokens_per_sec: float
    wall_seconds: float


def run_experiment(cfg: DictConfig, output_dir: str) -> RunResult:
    import lightning as L

    from balance_lab.build import build, build_trainer
    from balance_lab.callbacks import Progress, Throughput

    quiet_framework_logs()

    started = time.perf_counter()
    L.seed_everything(cfg.seed, verbose=False)
    try:
        built = build(cfg)  # may reject the config: no MLflow run exists yet
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from exc
    resolved = OmegaConf.to_container(cfg, resolve=True)
    uri = tracking.resolve_tracking_uri(cfg.logger.tracking_uri)
    name = cfg.logger.run_name or tracking.run_name(resolved)
    tags = {tracking.TAG_SWEEP: cfg.logger.sweep} if cfg.logger.get("sweep") else {}
    with tracking.open_run(uri, cfg.logger.experiment_name, name, tags) as run:
        run.log_params(tracking.flatten(resolved))
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        throughput = Throughput()
        trainer = build_trainer(cfg, tracking.lightning_logger(run), [throughput, Progress(leave=True)], output_dir)
        trainer.fit(built.module, datamodule=built.datamodule)
        if trainer.interrupted:
            raise KeyboardInterrupt
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if built.module.val_step != trainer.global_step:  # the final validation, unless fit just ran it
            trainer.validate(built.module, datamodule=built.datamodule, verbose=False)
            metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
        run.log_json(built.module.val_loads, "loads/val_loads.json")
    return RunResult(run.run_id, uri, metrics, throughput.tokens_per_sec, time.perf_counter() - started)


def quiet_framework_logs() -> None:
    """Lightning's INFO banners (GPU available..., tips) would drown the progress display."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    tracking.quiet_mlflow_logs()


def print_summary(result: RunResult, name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result.metrics
    table = Table(title=f"balance-lab run: {name}", show_header=True, header_style="bold")
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
    Console().print(table)
