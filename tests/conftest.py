from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.runners import cli_in_new_process, cli_in_this_process, run_in_this_process
from tests.helpers.session import corpus_build_log, session_root
from tests.helpers.short import SHORT_RUN
from tests.helpers.stores import new_store, working_in_new_store

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Tests run N at a time (make test: 2 workers on 2 cores): every process they start gets one
    # intra-op thread, or 2 x 2 spinning OpenMP threads fight over 2 cores and each run slows down.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # Started in the background by a non-interactive shell (`make test &` in a script), this process
    # ignores SIGINT and so would every process it starts: the tests' Ctrl-C would reach nobody
    # (`balance-lab ui` hung, a sweep watched on). A handler, unlike an ignore, is not inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory) -> Path:
    """One built-in corpus cache for the whole session, shared by every xdist worker (their temporary
    folders share a parent; a file lock lets one build it): the corpus and its default 8K BPE, trained
    here once (~30 s on 2 cores) by the code a first `balance-lab run` calls. What building printed
    is kept in corpus_build_log(...)."""
    import contextlib
    import fcntl
    import io

    from balance_lab.config.compose import compose_config
    from balance_lab.data.builtin import load_builtin_corpus
    from balance_lab.data.builtin_bpe import ensure_token_dir

    root = session_root(tmp_path_factory)
    cache = Path(os.environ.get("BALANCE_LAB_CACHE") or root / "corpus-cache")
    cache.mkdir(parents=True, exist_ok=True)
    printed = io.StringIO()
    with open(root / "corpus-cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load_builtin_corpus(cache)  # conf/data/builtin.yaml's corpus; a no-op once it is cached
        with contextlib.redirect_stderr(printed):
            ensure_token_dir(compose_config([f"data.cache_dir={cache}"]).data)
        with open(corpus_build_log(tmp_path_factory), "a") as built:
            built.write(printed.getvalue())
    return cache


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """A new SQLite MLflow store made once per session by MLflow itself (its ~50 schema migrations
    cost 2 s on 2 cores); each test's store starts as a copy of it: byte for byte what the first
    `balance-lab run` on an empty folder creates."""
    import fcntl

    root = session_root(tmp_path_factory)
    db = root / "empty-store" / "mlflow.db"
    with open(root / "empty-store.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not db.exists():
            from balance_lab.store import tracking

            db.parent.mkdir(exist_ok=True)
            tracking.client(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path, corpus_cache, empty_store, monkeypatch) -> str:
    """A new SQLite MLflow store in a temporary working directory, used by subprocesses too."""
    uri = new_store(tmp_path, empty_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BALANCE_LAB_CACHE", str(corpus_cache))
    monkeypatch.chdir(tmp_path)
    return uri


@dataclass
class Swept:
    uri: str  # the store
    root: Path  # the working directory the sweep ran in
    reports: Path  # the report's folder
    report_stdout: str
    sweep: subprocess.CompletedProcess  # `balance-lab sweep paper_main seeds=[0,1] ... --jobs 2`
    failing: subprocess.CompletedProcess  # `balance-lab run ... fail_after_steps=2` (run_in_process)


@pytest.fixture(scope="session")
def swept(tmp_path_factory, corpus_cache, empty_store) -> Swept:
    """paper_main with 2 seeds (4 runs, 2 configurations, two at a time) and one FAILED run in the
    same experiment; the report of it."""
    root = tmp_path_factory.mktemp("report")
    with working_in_new_store(root, empty_store, corpus_cache) as uri:
        sweep = cli_in_new_process("sweep", "paper_main", "seeds=[0,1]", *SHORT_RUN, "--jobs", "2")
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        failing = run_in_this_process(
            "balance=loss_free", "seed=7", *SHORT_RUN, "fail_after_steps=2", "logger.experiment_name=paper_main"
        )
        assert failing.returncode != 0
        report = cli_in_this_process(
            "report", "paper_main", "--out", str(root / "reports")
        )  # reads and writes, never execs
        assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return Swept(uri, root, root / "reports" / "paper_main", report.stdout, sweep, failing)
