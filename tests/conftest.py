from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BALANCE_LAB = str(Path(sys.executable).with_name("balance-lab"))


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory) -> Path:
    """One built-in corpus cache for the whole session (building it takes a few seconds)."""
    cache = os.environ.get("BALANCE_LAB_CACHE")
    return Path(cache) if cache else tmp_path_factory.mktemp("corpus-cache")


@pytest.fixture
def store(tmp_path, corpus_cache, monkeypatch) -> str:
    """A fresh SQLite MLflow store in a temporary working directory, used by subprocesses too."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BALANCE_LAB_CACHE", str(corpus_cache))
    monkeypatch.chdir(tmp_path)
    return uri


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`balance-lab ARGS...` as a user runs it: a real process, in the current directory and environment."""
    return subprocess.run([BALANCE_LAB, *args], capture_output=True, text=True, timeout=timeout)


def all_runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []
