from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BALANCE_LAB = str(Path(sys.executable).with_name("balance-lab"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Tests run N at a time (make test: 2 workers on 2 cores): every process they start gets one
    # intra-op thread, or 2 x 2 spinning OpenMP threads fight over 2 cores and each run slows down.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory) -> Path:
    """One built-in corpus cache for the whole session, built once (10-20 s on 2 cores) and shared by
    every xdist worker: their temporary folders share a parent, and a file lock lets one build it."""
    import fcntl

    from balance_lab.data.builtin import load_builtin_corpus

    if os.environ.get("BALANCE_LAB_CACHE"):
        return Path(os.environ["BALANCE_LAB_CACHE"])
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    cache = root / "corpus-cache"
    cache.mkdir(exist_ok=True)
    with open(root / "corpus-cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load_builtin_corpus(cache)  # conf/data/builtin.yaml's corpus; a no-op once it is cached
    return cache


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


SHORT_RUN = ["trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.log_every_n_steps=2", "data.batch_size=4",
             "data.val_sequences=12"]


# Tests that use `swept` run in one xdist worker (`--dist loadgroup`), so it is trained once.
SWEPT_GROUP = pytest.mark.xdist_group("swept")


@pytest.fixture(scope="session")
def swept(tmp_path_factory, corpus_cache):
    """paper_main with 2 seeds (4 runs, 2 configurations) and one FAILED run in the same experiment."""
    root = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("BALANCE_LAB_CACHE", str(corpus_cache))
        patch.chdir(root)
        result = run_cli("sweep", "paper_main", "seeds=[0,1]", *SHORT_RUN, "--jobs", "2")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        failing = run_cli("run", "balance=loss_free", "seed=7", *SHORT_RUN, "fail_after_steps=2",
                          "logger.experiment_name=paper_main")
        assert failing.returncode != 0
        report = run_cli("report", "paper_main", "--out", str(root / "reports"))
        assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return uri, root / "reports" / "paper_main", report.stdout

