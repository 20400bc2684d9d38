"""MLflow glue: where the store is, what a run is called, and a run's whole lifecycle.

A run is created only once everything it needs has been built (so bad input leaves no run) and
always ends FINISHED, FAILED (with `balance_lab.status_reason`) or KILLED, never RUNNING.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping

from balance_lab.balancing.knobs import is_added_off
from balance_lab.errors import DiskFull
from balance_lab.store.naming import run_name  # noqa: F401 - a run's name is part of its record

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG_SWEEP = "balance_lab.sweep"
TAG_GIT_SHA = "balance_lab.git_sha"
TAG_STATUS_REASON = "balance_lab.status_reason"
TAG_CONFIG_HASH = "balance_lab.config_hash"
TAG_PARENT = "mlflow.parentRunId"
TAG_CHECKPOINT = "balance_lab.checkpoint"  # path of the run's latest checkpoint (what --resume RUN_ID loads)
TAG_WARNING = "balance_lab.warning"  # routing collapse and dead experts, in words
TAG_ROLE = "balance_lab.role"  # ROLE_SWEEP_PARENT on a sweep invocation's parent run; absent on training runs
ROLE_SWEEP_PARENT = "sweep_parent"
TAG_COMMAND = "balance_lab.command"  # a sweep parent's command line, as typed
SWEPT_TAG_PREFIX = "sweep."  # sweep.<override key> = value, on every sweep child

# Sections that say where and how a run is recorded, scheduled, saved or watched, not what is
# trained (`seeds` is a sweep's list of seeds; the run's own seed is `seed`).
_NOT_IN_HASH = (
    "logger",
    "threads",
    "seeds",
    "checkpoint",
    "alerts",
    "diagnostics",
    "resume_run_id",
    "resume_ckpt",
    "balance_update_rate_auto",
)  # how u was chosen, not what trains: a run with the same u is the same


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Option, else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory (made absolute)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def quiet_mlflow_logs() -> None:
    # Creating a SQLite store runs ~50 alembic migrations, each logged at INFO; mlflow's import
    # builds matplotlib's font cache once, also at INFO.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "matplotlib.font_manager"):
        logging.getLogger(name).setLevel(logging.WARNING)


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


_READY_STORES: set[str] = set()


def client(uri: str):
    """An MlflowClient on `uri`. A SQLite store is first opened under a file lock (`<db>.lock`): two
    processes creating the same new store at once race in its schema migrations and break it."""
    quiet_mlflow_logs()
    from mlflow.tracking import MlflowClient

    db = sqlite_file(uri)
    if db is None or uri in _READY_STORES:
        return MlflowClient(uri)
    import fcntl

    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mlflow_client = MlflowClient(uri)  # creates and migrates a new store
    _READY_STORES.add(uri)
    return mlflow_client


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'balance': {'alpha': 0.0}} -> {'balance.alpha': 0.0}: the params contract of the design."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, prefix=f"{name}.")
        else:
            flat[name] = value
    return flat


def config_hash(resolved: Mapping[str, Any]) -> str:
    """Identity of what a run trains: two runs with the same hash train the same thing."""
    what = {k: v for k, v in resolved.items() if k not in _NOT_IN_HASH}
    if isinstance(what.get("balance"), Mapping):  # knobs added later, switched off: as before they existed
        what["balance"] = {k: v for k, v in what["balance"].items() if not is_added_off(k, v)}
    if isinstance(what.get("model"), Mapping):  # how the model executes (eager or compiled), not what it trains
        what["model"] = {k: v for k, v in what["model"].items() if k not in ("compile", "compile_mode")}
    if isinstance(what.get("trainer"), Mapping):
        what["trainer"] = {k: v for k, v in what["trainer"].items() if k != "enable_progress_bar"}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


# MLflow 3's UI opens an experiment of this kind on its runs table (not the GenAI traces overview).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(client, name: str) -> str:
    """The experiment's id, created if missing and restored if it was deleted in the UI."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        from mlflow.exceptions import MlflowException

        try:
            return client.create_experiment(name, tags=dict([EXPERIMENT_KIND]))
        except MlflowException:  # another process created it between the lookup and here
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if EXPERIMENT_KIND[0] not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
    return experiment.experiment_id


def find_finished(client, experiment_name: str, hash_: str):
    """A FINISHED run of the experiment with this config hash, or None."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        max_results=1,
        filter_string=f"tags.`{TAG_CONFIG_HASH}` = '{hash_}' and attributes.status = 'FINISHED'",
    )
    return runs[0] if runs else None


def find_resumable(client, experiment_name: str, hash_: str):
    """The latest KILLED run of the experiment with this config hash whose checkpoint is still on
    disk (a sweep stopped by Ctrl-C or SIGTERM): a re-run sweep continues it instead of starting over."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        max_results=20,
        order_by=["attributes.start_time DESC"],
        filter_string=f"tags.`{TAG_CONFIG_HASH}` = '{hash_}' and attributes.status = 'KILLED'",
    )
    for run in runs:
        checkpoint = run.data.tags.get(TAG_CHECKPOINT)
        if checkpoint and Path(checkpoint).is_file():
            return run
    return None


def git_sha() -> str:
    """The commit balance-lab runs from, with '-dirty' when tracked files differ from it."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here
        )
        if out.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], capture_output=True, timeout=5, cwd=here)
        return out.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class TrackedRun:
    """One MLflow run, opened by `open_run` and closed with a definite status."""

    def __init__(self, client, run_id: str, tracking_uri: str, spill_dir: Path | None = None):
        from balance_lab.store.outbox import Outbox

        self.client, self.run_id, self.tracking_uri = client, run_id, tracking_uri
        self.outbox = Outbox(client, run_id)  # what is logged survives a store that is briefly away
        self.spill_dir = Path(spill_dir or Path.cwd())  # where undeliverable records are written at the end

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.outbox.log_text(text, artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj), artifact_file)

    def log_file(self, local_path: Path, artifact_dir: str) -> None:
        """A binary artifact (parquet, PNG), sent now: a store that is away leaves it where it is, in
        the run's output folder, with a line saying so (the run's status is not at stake)."""
        try:
            self.client.log_artifact(self.run_id, str(local_path), artifact_dir)
        except Exception as exc:  # noqa: BLE001 - the file stays on disk; say where
            print(f"balance-lab: {local_path.name} not stored ({str(exc).splitlines()[0]}); kept at {local_path}")

    def set_tag(self, key: str, value: str) -> None:
        self.outbox.set_tag(key, value)


class FollowerRun:
    """What a data-parallel rank other than 0 holds instead of a run: the run is rank 0's, and
    Lightning re-executes the command on the other ranks (or SLURM/torchrun start them), so
    they must not create runs of their own. Every record call is a no-op."""

    client = None
    run_id = ""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri

    def log_params(self, params) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_json(self, obj, artifact_file: str) -> None:
        pass

    def log_file(self, local_path, artifact_dir: str) -> None:
        pass

    def set_tag(self, key: str, value: str) -> None:
        pass


def launched_as_rank_zero() -> bool:
    """False in a process that a launcher started as another data-parallel rank: Lightning's
    re-executed ranks (LOCAL_RANK / NODE_RANK), torchrun (RANK) or a multi-task SLURM step."""
    env = os.environ
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and int(env.get("SLURM_PROCID", "0")) > 0:
        return False
    return all(int(env.get(var, "0") or 0) == 0 for var in ("RANK", "LOCAL_RANK", "NODE_RANK"))


class StoreUnreachable(RuntimeError):
    """The run trained, but the tracking store could not be told how it ended."""


TRACEBACK_ARTIFACT = "error/traceback.txt"  # a FAILED run's traceback


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return f"interrupted ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"[:5000]


@contextlib.contextmanager
def open_run(
    tracking_uri: str,
    experiment_name: str,
    name: str,
    tags: Mapping[str, str] | None = None,
    resume_run_id: str | None = None,
    spill_dir: Path | None = None,
) -> Iterator[TrackedRun]:
    """Create the run (or reopen `resume_run_id`); on exit mark it FINISHED, KILLED (interrupt or
    signal) or FAILED (any other error, with the reason as a tag)."""
    from balance_lab.store.liveness import owner_tags

    if not launched_as_rank_zero():
        yield FollowerRun(tracking_uri)
        return
    from balance_lab.store.patience import wait_for_store

    mlflow_client = client(tracking_uri)
    tags = {TAG_GIT_SHA: git_sha(), **owner_tags(), **(tags or {})}

    def reopen() -> str:
        mlflow_client.update_run(resume_run_id, status="RUNNING")
        if TAG_STATUS_REASON in mlflow_client.get_run(resume_run_id).data.tags:  # the reason it stopped last time
            mlflow_client.delete_tag(resume_run_id, TAG_STATUS_REASON)
        for key, value in tags.items():
            mlflow_client.set_tag(resume_run_id, key, value)
        return resume_run_id

    def create() -> str:
        return mlflow_client.create_run(
            experiment_id(mlflow_client, experiment_name), run_name=name, tags=tags
        ).info.run_id

    # a store that is away as the run starts (a sweep's next job, a server restart) is waited for
    run_id = wait_for_store(reopen if resume_run_id else create, "opening the run")
    tracked = TrackedRun(mlflow_client, run_id, tracking_uri, spill_dir)
    try:
        yield tracked
    except BaseException as exc:
        from balance_lab.errors import Interrupted

        killed = isinstance(exc, (KeyboardInterrupt, SystemExit, Interrupted))
        if not killed:  # the reason tag holds one line; where it came from goes beside it
            import traceback

            tracked.log_text("".join(traceback.format_exception(exc)), TRACEBACK_ARTIFACT)
        _close(tracked, "KILLED" if killed else "FAILED", _reason(exc))
        raise
    else:
        _close(tracked, "FINISHED", None)


def _close(run: TrackedRun, status: str, reason: str | None) -> None:
    """Deliver the kept metrics and the final status; a store that is away gets them written down."""
    from balance_lab.store.outbox import CLOSING_WAITS

    # A stopped run (SIGTERM: a preemption's grace period is ticking) waits seconds for the store, not a minute.
    waits = (2.0, 4.0) if status == "KILLED" else CLOSING_WAITS
    try:
        spilled, lost = run.outbox.close(run.spill_dir.resolve() / f"unsent-{run.run_id}.jsonl", waits), ""
    except DiskFull as exc:  # the store is away and the disk is full: say so in one line
        spilled, lost = None, f"; {exc}"
    try:
        if reason:
            run.client.set_tag(run.run_id, TAG_STATUS_REASON, reason)
        run.client.set_terminated(run.run_id, status)
    except Exception as exc:
        raise StoreUnreachable(
            f"the tracking store {run.tracking_uri} did not take run {run.run_id}'s final status {status} ({exc}); "
            + (f"{len(run.outbox)} unsent records (metrics, tags, artifacts) are in {spilled}; " if spilled else "")
            + "when it is back: balance-lab runs --stale (and --sync FILE)"
            + lost
        ) from exc
    if lost:
        raise StoreUnreachable(f"the tracking store {run.tracking_uri} was away at the end of the run{lost}")
    if spilled:
        raise StoreUnreachable(
            f"{len(run.outbox)} records (metrics, tags, artifacts) could not be sent to {run.tracking_uri}; "
            f"they are in {spilled}: balance-lab runs --sync {spilled}"
        )


def lightning_logger(run: TrackedRun):
    """Lightning's MLFlowLogger writing into `run` through its outbox, leaving the status to `open_run`."""
    from lightning.pytorch.loggers import MLFlowLogger

    from balance_lab.store.outbox import OutboxClient

    class _RunScopedMLFlowLogger(MLFlowLogger):
        def finalize(self, status: str = "success") -> None:  # open_run owns the final status
            pass

    logger = _RunScopedMLFlowLogger(tracking_uri=run.tracking_uri, run_id=run.run_id)
    logger._mlflow_client = OutboxClient(run.client, run.outbox)
    return logger
