"""What `balance-lab run --resume REF` continues: REF is an MLflow run id or a checkpoint file.

Either way the answer is the same triple: the run (which must exist, not be FINISHED and not
belong to a live process), its latest checkpoint, and the resolved config it was trained with
(read from the checkpoint, so the resumed run trains exactly what the first part did).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from balance_lab.errors import ConfigError
from balance_lab.store.tracking import TAG_CHECKPOINT


@dataclass
class ResumeTarget:
    run_id: str
    run_name: str
    checkpoint: Path
    config_yaml: str
    step: int


def resume_target(ref: str, tracking_uri: str) -> ResumeTarget:
    from mlflow.exceptions import MlflowException

    from balance_lab.store import tracking

    db = tracking.sqlite_file(tracking_uri)
    if db is not None and not db.exists():
        raise ConfigError(
            f"--resume {ref}: no MLflow store at {tracking_uri} (set MLFLOW_TRACKING_URI to the run's store)"
        )
    client = tracking.client(tracking_uri)
    given = Path(ref).expanduser()
    run_id = _meta(ref, given)["run_id"] if given.is_file() else ref
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(
            f"--resume {ref}: no run {run_id!r} in the store {tracking_uri} (and no such checkpoint file)"
        ) from exc
    _check_resumable(ref, run)
    checkpoint = given if given.is_file() else _recorded_checkpoint(ref, run)
    meta = _meta(ref, checkpoint)
    if meta["run_id"] != run_id:
        raise ConfigError(f"--resume {ref}: checkpoint {checkpoint} belongs to run {meta['run_id']}, not {run_id}")
    return ResumeTarget(run_id, run.info.run_name, checkpoint, meta["config"], int(meta.get("global_step") or 0))


def _check_resumable(ref: str, run) -> None:
    """Not FINISHED, and not RUNNING in a process that is still alive."""
    from balance_lab.store.liveness import owner_of

    name = f"{run.info.run_name} ({run.info.run_id})"
    if run.info.status == "FINISHED":
        raise ConfigError(f"--resume {ref}: run {name} already FINISHED; nothing to resume")
    if run.info.status == "RUNNING":
        owner = owner_of(run.data.tags)
        if owner.state != "gone":
            raise ConfigError(
                f"--resume {ref}: run {name} is RUNNING ({owner.detail}); "
                "stop it first, or mark it with balance-lab runs --stale if its process is gone"
            )


def _recorded_checkpoint(ref: str, run) -> Path:
    recorded = run.data.tags.get(TAG_CHECKPOINT)
    if not recorded:
        raise ConfigError(
            f"--resume {ref}: run {run.info.run_name} has no checkpoint (it stopped before its first "
            "one, or ran with checkpoint.every_n_steps=0 and was not stopped by a signal)"
        )
    checkpoint = Path(recorded)
    if not checkpoint.is_file():
        raise ConfigError(
            f"--resume {ref}: the run's checkpoint {checkpoint} is missing (moved, or on another machine?); "
            "pass the checkpoint file instead: balance-lab run --resume PATH"
        )
    return checkpoint


def _meta(ref: str, checkpoint: Path) -> dict:
    from balance_lab.training.checkpointing import read_checkpoint_meta

    try:
        return read_checkpoint_meta(checkpoint)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which
        raise ConfigError(
            f"--resume {ref}: {checkpoint} is not a readable balance-lab checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
