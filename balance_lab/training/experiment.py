"""One training run from a composed config: build, open the MLflow run, fit, validate, record."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from balance_lab.store import tracking
from balance_lab.store.tracking import TAG_CHECKPOINT, TAG_WARNING


@dataclass
class RunResult:
    name: str
    run_id: str
    tracking_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    tokens_per_sec: float = 0.0
    wall_seconds: float = 0.0
    skipped: bool = False  # an identical run had already FINISHED (logger.skip_finished)
    warnings: list[str] = field(default_factory=list)  # routing alerts (also the run's balance_lab.warning tag)


def run_tags(cfg: DictConfig, hash_: str, swept: Mapping[str, str]) -> dict[str, str]:
    tags = {tracking.TAG_CONFIG_HASH: hash_}
    if cfg.logger.get("sweep"):
        tags[tracking.TAG_SWEEP] = cfg.logger.sweep
    if cfg.logger.get("parent_run_id"):
        tags[tracking.TAG_PARENT] = cfg.logger.parent_run_id
    tags |= {f"{tracking.SWEPT_TAG_PREFIX}{k}": str(v) for k, v in swept.items()}
    return tags


def run_experiment(cfg: DictConfig, output_dir: str, swept: Mapping[str, str] | None = None) -> RunResult:
    """Train and record one run. `swept`: this run's values of the keys its sweep varies.

    Raises ConfigError before any MLflow run exists; once the run exists it always ends FINISHED,
    FAILED (with the reason) or KILLED (signal: after a checkpoint, see checkpointing.py)."""
    import lightning as L
    import torch

    from balance_lab.config.validation import auto_note, check_config
    from balance_lab.diagnostics.artifacts import log_routing_records
    from balance_lab.store.patience import wait_for_store
    from balance_lab.store.reachable import check_reachable
    from balance_lab.store.tracking import launched_as_rank_zero
    from balance_lab.training.build import build_datamodule, build_module, check_trainer_arguments

    started = time.perf_counter()
    swept = dict(swept or {})
    quiet_framework_logs()
    patient_but_not_stuck_http()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    spec = check_config(cfg)  # bad input: ConfigError, no MLflow run exists yet
    note = auto_note(cfg)
    if note and launched_as_rank_zero():
        print(f"balance-lab: {note}", file=sys.stderr)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    uri = tracking.resolve_tracking_uri(cfg.logger.tracking_uri)
    if cfg.logger.get("parent_run_id"):  # a sweep's job: its command checked the store; an outage is waited out
        wait_for_store(lambda: check_reachable(uri), "a sweep's job starting")
    else:
        check_reachable(uri)
    hash_ = tracking.config_hash(resolved)
    resume_run_id, resume_ckpt = cfg.get("resume_run_id"), cfg.get("resume_ckpt")
    if cfg.logger.get("skip_finished") and not resume_run_id:  # a sweep run again: continue, don't repeat
        client = tracking.client(uri)
        name_, what = cfg.logger.experiment_name, "looking up this job's earlier runs"
        done = wait_for_store(lambda: tracking.find_finished(client, name_, hash_), what)
        if done is not None:
            return RunResult(done.info.run_name, done.info.run_id, uri, dict(done.data.metrics), skipped=True)
        stopped = wait_for_store(lambda: tracking.find_resumable(client, name_, hash_), what)
        if stopped is not None:
            resume_run_id, resume_ckpt = stopped.info.run_id, stopped.data.tags[TAG_CHECKPOINT]
            print(f"resuming {stopped.info.run_name} ({resume_run_id}) from {resume_ckpt}", file=sys.stderr)
    check_trainer_arguments(spec)  # Lightning's own check of its arguments: ConfigError
    datamodule = build_datamodule(spec)  # ConfigError when a domain is too short for one sequence
    name = cfg.logger.run_name or tracking.run_name(resolved, swept)
    with tracking.open_run(
        uri,
        cfg.logger.experiment_name,
        name,
        run_tags(cfg, hash_, swept),
        resume_run_id=resume_run_id,
        spill_dir=Path(output_dir),
    ) as run:
        if not resume_run_id:
            run.log_params(tracking.flatten(resolved))
            run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        L.seed_everything(cfg.seed, verbose=False)  # the model's initial weights follow the seed
        module = build_module(spec, datamodule)  # inside the run: a bug here is a FAILED run with its traceback
        try:
            metrics, throughput = _fit(spec, datamodule, module, run, name, output_dir, resume_ckpt)
        except BaseException:  # a failed or stopped run keeps what it recorded of its routing
            with contextlib.suppress(Exception):
                log_routing_records(module, run, Path(output_dir), name, draw=False)
            raise
        log_routing_records(module, run, Path(output_dir), name)
        warnings = routing_alerts(metrics, module.val_loads, cfg.get("alerts"))
        if warnings:
            run.set_tag(TAG_WARNING, "; ".join(warnings))
        run.log_json(module.val_loads, "loads/val_loads.json")
    return RunResult(
        name, run.run_id, uri, metrics, throughput.tokens_per_sec, time.perf_counter() - started, warnings=warnings
    )


def _fit(spec, datamodule, module, run, name: str, output_dir: str, resume_ckpt: str | None):
    """Lightning's fit (continued from `resume_ckpt` when given), then the final validation."""
    import torch

    from balance_lab.training.build import build_trainer
    from balance_lab.training.callbacks import FailAfterSteps, Heartbeat, Progress, Throughput
    from balance_lab.training.checkpointing import StepCheckpoints
    from balance_lab.training.core_share import CoreShare
    from balance_lab.training.launcher_temp import launcher_temp_dir

    cfg = spec.cfg
    checkpoint_dir = Path(cfg.checkpoint.dir) if cfg.checkpoint.get("dir") else Path(output_dir) / "checkpoints"
    if resume_ckpt and not cfg.checkpoint.get("dir"):
        checkpoint_dir = Path(resume_ckpt).parent  # keep writing where the run's checkpoints are
    checkpoints = StepCheckpoints(
        checkpoint_dir,
        int(cfg.checkpoint.every_n_steps),
        run.run_id,
        OmegaConf.to_yaml(cfg, resolve=True),
        on_saved=lambda path, step: run.set_tag(TAG_CHECKPOINT, str(path)),
    )
    throughput = Throughput()
    callbacks = [throughput, checkpoints] + ([Heartbeat(run.client, run.run_id)] if run.client else [])
    if spec.trainer.get("accelerator") == "cpu":  # threads set (by the user, --jobs, OpenMP's variable): pinned
        pinned = cfg.get("threads") or (torch.get_num_threads() if "OMP_NUM_THREADS" in os.environ else None)
        callbacks.append(CoreShare(name, pinned=pinned))
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(Progress(leave=True))
    if cfg.get("fail_after_steps") is not None:
        callbacks.append(FailAfterSteps(int(cfg.fail_after_steps)))
    trainer = build_trainer(spec, tracking.lightning_logger(run) if run.client else False, callbacks, output_dir)
    with launcher_temp_dir(trainer):
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_ckpt)  # a signal: Interrupted
    if trainer.interrupted:
        raise KeyboardInterrupt
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if module.val_step != trainer.global_step:  # the final validation, unless fit just ran it
        trainer.validate(module, datamodule=datamodule, verbose=False)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
    if not cfg.checkpoint.get("keep_when_finished", True) and trainer.global_rank == 0 and checkpoints.path.exists():
        checkpoints.path.unlink()  # a finished run cannot be resumed; sweeps of many runs would fill the disk
        run.set_tag(TAG_CHECKPOINT, "")
    return metrics, throughput


def routing_alerts(metrics: Mapping[str, float], val_loads: Mapping[str, Any] | None, alerts) -> list[str]:
    """Routing collapse, in words: MaxVio_global above its threshold, experts that no token reached."""
    if not alerts:
        return []
    found = []
    maxvio = metrics.get("val/maxvio_global")
    if maxvio is not None and maxvio > alerts.maxvio_global:
        found.append(f"routing collapse: val MaxVio_global {maxvio:.2f} > {alerts.maxvio_global}")
    if val_loads:
        dead = {
            layer: sum(1 for c in counts if c == 0)
            for layer, counts in zip(val_loads["layer_ids"], val_loads["layers"])
        }
        total = sum(dead.values())
        if total > alerts.dead_experts:
            per_layer = ", ".join(f"layer {layer}: {n}" for layer, n in dead.items() if n)
            found.append(f"{total} dead experts (no validation token; {per_layer})")
    return found


def patient_but_not_stuck_http() -> None:
    """MLflow retries a failed HTTP request 7 times with doubling waits (minutes); with the metric
    outbox keeping what a down server misses, a few quick retries are enough. Users' settings win."""
    import os

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def quiet_framework_logs() -> None:
    """Lightning's INFO banners (GPU available..., tips) would drown the progress display."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # resuming mid-epoch is exact here: the sampler restarts at the global step (data/datamodule.py)
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
    tracking.quiet_mlflow_logs()
