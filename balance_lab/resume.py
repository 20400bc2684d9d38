"""What `balance-lab run --resume REF` continues: REF is an MLflow run id or a checkpoint file.

Either way the answer is the same triple: the run (which must exist, not be FINISHED and not
belong to a live process), its latest checkpoint, and the resolved config it was trained with
(read from the checkpoint, so the resumed run trains exactly what the first part did).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from balance_lab.errors import ConfigError

TAG_CHECKPOINT = "balance_lab.checkpoint"


@dataclass
class ResumeTarget:
    run_id: str
    run_name: str
    checkpoint: Path
    config_yaml: str
    step: int


def resume_target(ref: str, tracking_uri: str) -> ResumeTarget:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from balance_lab.checkpointing import read_checkpoint_meta
    from balance_lab.liveness import owner_of

    from balance_lab.tracking import quiet_mlflow_logs

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).exists():
        raise ConfigError(f"--resume {ref}: no MLflow store at {tracking_uri} (set MLFLOW_TRACKING_URI to the run's store)")
    quiet_mlflow_logs()
    client = MlflowClient(tracking_uri)
    path = Path(ref).expanduser()
    run_id = None if path.is_file() else ref
    if run_id is None:
        meta = _meta(path, read_checkpoint_meta)
        run_id = meta["run_id"]
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(f"--resume {ref}: no run {run_id!r} in the store {tracking_uri} (and no such checkpoint file)") from exc
    status = run.info.status
    if status == "FINISHED":
        raise ConfigError(f"--resume {ref}: run {run.info.run_name} ({run_id}) already FINISHED; nothing to resume")
    if status == "RUNNING":
        owner = owner_of(run.data.tags)
        if owner.state != "gone":
            raise ConfigError(f"--resume {ref}: run {run.info.run_name} ({run_id}) is RUNNING ({owner.detail}); "
                              "stop it first, or mark it with balance-lab runs --stale if its process is gone")
    if path.is_file():
        checkpoint = path
    else:
        recorded = run.data.tags.get(TAG_CHECKPOINT)
        if not recorded:
            raise ConfigError(f"--resume {ref}: run {run.info.run_name} has no checkpoint (it stopped before its first "
                              "one, or ran with checkpoint.every_n_steps=0 and was not stopped by a signal)")
        checkpoint = Path(recorded)
        if not checkpoint.is_file():
            raise ConfigError(f"--resume {ref}: the run's checkpoint {checkpoint} is missing (moved, or on another machine?); "
                              "pass the checkpoint file instead: balance-lab run --resume PATH")
        meta = _meta(checkpoint, read_checkpoint_meta)
    if meta["run_id"] != run_id:
        raise ConfigError(f"--resume {ref}: checkpoint {checkpoint} belongs to run {meta['run_id']}, not {run_id}")
    return ResumeTarget(run_id, run.info.run_name, checkpoint, meta["config"], int(meta.get("global_step") or 0))


def _meta(path: Path, read) -> dict:
    try:
        return read(path)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which
        raise ConfigError(f"--resume {path}: not a readable balance-lab checkpoint ({type(exc).__name__}: {exc})") from exc
