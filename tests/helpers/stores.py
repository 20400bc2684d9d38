"""MLflow stores for tests: a copy of a store, a working folder around one, every run in one."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest


def new_store(folder: Path, source: Path) -> str:
    """sqlite:/// URI of a new store in `folder`: a copy of `source` (the session's empty store, or
    a trained one that a test may change without touching the original)."""
    import shutil

    shutil.copyfile(source, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@contextlib.contextmanager
def working_in_new_store(folder: Path, source: Path, corpus_cache: Path):
    """For a fixture broader than one test, or a copy of a shared store: `folder` as the working
    directory, with a new store there copied from `source` (yields its URI) and the session's corpus
    cache, for every process started inside."""
    uri = new_store(folder, source)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("BALANCE_LAB_CACHE", str(corpus_cache))
        patch.chdir(folder)
        yield uri


def all_runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def artifact_frame(uri: str, run_id: str, path: str, folder: Path):
    """A run's parquet artifact (e.g. loads/steps.parquet) as a pandas frame, downloaded to `folder`."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    folder.mkdir(parents=True, exist_ok=True)
    return pd.read_parquet(MlflowClient(uri).download_artifacts(run_id, path, str(folder)))
