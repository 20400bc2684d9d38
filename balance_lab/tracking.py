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

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG_SWEEP = "balance_lab.sweep"
TAG_GIT_SHA = "balance_lab.git_sha"
TAG_STATUS_REASON = "balance_lab.status_reason"
TAG_CONFIG_HASH = "balance_lab.config_hash"
TAG_PARENT = "mlflow.parentRunId"
SWEPT_TAG_PREFIX = "sweep."  # sweep.<override key> = value, on every sweep child

# Sections that say where and how a run is recorded or scheduled, not what is trained
# (`seeds` is a sweep's list of seeds; the run's own seed is `seed`).
_NOT_IN_HASH = ("logger", "threads", "seeds")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Option, else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory (made absolute)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def quiet_mlflow_logs() -> None:
    # Creating a SQLite store runs ~50 alembic migrations, each logged at INFO; mlflow's import
    # builds matplotlib's font cache once, also at INFO.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "matplotlib.font_manager"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
    if isinstance(what.get("trainer"), Mapping):
        what["trainer"] = {k: v for k, v in what["trainer"].items() if k != "enable_progress_bar"}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


# MLflow 3's UI opens an experiment of this kind on its runs table (not the GenAI traces overview).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(client, name: str) -> str:
    """The experiment's id, created if missing and restored if it was deleted in the UI."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, tags=dict([EXPERIMENT_KIND]))
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
    runs = client.search_runs([experiment.experiment_id], max_results=1,
                              filter_string=f"tags.`{TAG_CONFIG_HASH}` = '{hash_}' and attributes.status = 'FINISHED'")
    return runs[0] if runs else None


def git_sha() -> str:
    """The commit balance-lab runs from, with '-dirty' when tracked files differ from it."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=here)
        if out.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], capture_output=True, timeout=5, cwd=here)
        return out.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _fmt(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def run_name(cfg: Mapping[str, Any], swept: Mapping[str, str] | None = None) -> str:
    """A name that says what the run is, e.g. `loss_free-u1e-3-sign-add-tiny-s0`; a sweep's other
    swept keys are appended (`...-s0-score_func=softmax`) so names stay unique within a grid."""
    balance, parts = cfg["balance"], [cfg["balance"]["name"]]
    if balance.get("update_rate", 0) > 0:
        parts += [f"u{_fmt(balance['update_rate'])}", balance.get("rule", "sign"), balance.get("bias", "additive")[:3]]
    if balance.get("alpha", 0) > 0:
        parts += [f"a{_fmt(balance['alpha'])}", balance.get("scope", "micro")]
    if balance.get("z_loss", 0) > 0:
        parts.append(f"z{_fmt(balance['z_loss'])}")
    parts += [cfg["model"]["name"], f"s{cfg['seed']}"]
    for key, value in (swept or {}).items():
        if key not in ("balance", "model", "seed") and not key.startswith("balance."):  # those are in the name
            parts.append(f"{key.split('.')[-1]}={value}")
    return "-".join(str(p) for p in parts)


class TrackedRun:
    """One MLflow run, opened by `open_run` and closed with a definite status."""

    def __init__(self, client, run_id: str, tracking_uri: str):
        self.client, self.run_id, self.tracking_uri = client, run_id, tracking_uri

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj), artifact_file)


@contextlib.contextmanager
def open_run(tracking_uri: str, experiment_name: str, name: str, tags: Mapping[str, str] | None = None) -> Iterator[TrackedRun]:
    """Create the run; on exit mark it FINISHED, KILLED (interrupt) or FAILED (any other error, with reason)."""
    quiet_mlflow_logs()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(experiment_id(client, experiment_name), run_name=name,
                            tags={TAG_GIT_SHA: git_sha(), **(tags or {})})
    tracked = TrackedRun(client, run.info.run_id, tracking_uri)
    try:
        yield tracked
    except (KeyboardInterrupt, SystemExit) as exc:
        client.set_tag(run.info.run_id, TAG_STATUS_REASON, f"interrupted ({type(exc).__name__})")
        client.set_terminated(run.info.run_id, "KILLED")
        raise
    except BaseException as exc:
        client.set_tag(run.info.run_id, TAG_STATUS_REASON, f"{type(exc).__name__}: {exc}"[:5000])
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    else:
        client.set_terminated(run.info.run_id, "FINISHED")


def lightning_logger(run: TrackedRun):
    """Lightning's MLFlowLogger writing into `run`, leaving the run's status to `open_run`."""
    from lightning.pytorch.loggers import MLFlowLogger

    class _RunScopedMLFlowLogger(MLFlowLogger):
        def finalize(self, status: str = "success") -> None:  # open_run owns the final status
            pass

    return _RunScopedMLFlowLogger(tracking_uri=run.tracking_uri, run_id=run.run_id)
