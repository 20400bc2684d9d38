from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

BALANCE_LAB = str(Path(sys.executable).with_name("balance-lab"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Tests run N at a time (make test: 2 workers on 2 cores): every process they start gets one
    # intra-op thread, or 2 x 2 spinning OpenMP threads fight over 2 cores and each run slows down.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # Started in the background by a non-interactive shell (`make test &` in a script), this process
    # ignores SIGINT and so would every process it starts: the tests' Ctrl-C would reach nobody
    # (`balance-lab ui` hung, a sweep watched on). A handler, unlike an ignore, is not inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class CorpusCache:
    path: Path
    built: str  # what building the default BPE printed ("" when an earlier session had built it)


@pytest.fixture(scope="session")
def shared_corpus(tmp_path_factory) -> CorpusCache:
    """One built-in corpus cache for the whole session, shared by every xdist worker (their temporary
    folders share a parent; a file lock lets one build it): the corpus and its default 8K BPE, trained
    here once (~30 s on 2 cores) by the code a first `balance-lab run` calls."""
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
        with open(root / "corpus-cache.built", "a") as built:
            built.write(printed.getvalue())
    return CorpusCache(cache, (root / "corpus-cache.built").read_text())


@pytest.fixture(scope="session")
def corpus_cache(shared_corpus) -> Path:
    return shared_corpus.path


def session_root(tmp_path_factory) -> Path:
    """The folder every xdist worker's temporary folders share (the session's own without xdist)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


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


@pytest.fixture
def store(tmp_path, corpus_cache, empty_store, monkeypatch) -> str:
    """A new SQLite MLflow store in a temporary working directory, used by subprocesses too."""
    uri = new_store(tmp_path, empty_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BALANCE_LAB_CACHE", str(corpus_cache))
    monkeypatch.chdir(tmp_path)
    return uri


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`balance-lab ARGS...` as a user runs it: a real process, in the current directory and environment."""
    return subprocess.run([BALANCE_LAB, *args], capture_output=True, text=True, timeout=timeout)


def cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """`balance-lab ARGS...` through the CLI's own code in this process (no interpreter to start):
    for commands that neither exec nor train, where what is tested is the command, not the process."""
    from typer.testing import CliRunner

    from balance_lab.cli import app

    result = CliRunner().invoke(app, list(args))
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback  # an error the command did not turn into an exit status: show where it came from

        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)


def run_in_process(*args: str) -> subprocess.CompletedProcess:
    """`balance-lab run ARGS...` through the CLI's code, then the training entry point's
    (`balance_lab.train`, Hydra's @main), both in this process: where the CLI execs the training
    process, this calls it. The same code and the same store, minus the second interpreter, whose
    imports (torch, Lightning, MLflow) are ~13 s of CPU on 2 cores, most of a short run. For what a
    run does and records; signals, kill -9, DDP ranks, processes at once and exit statuses of a real
    process need run_cli."""
    import logging

    from hydra.core.global_hydra import GlobalHydra

    def train_here(executable: str, argv: list[str]) -> None:
        assert argv[1:3] == ["-m", "balance_lab.train"], argv
        from balance_lab import train

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", ["balance_lab/train.py", *argv[3:]])
            try:
                train.main()
            finally:
                GlobalHydra.instance().clear()  # @hydra.main leaves it set; compose_config needs it clear
        raise SystemExit(0)  # what the exec'd process's exit status would be: train.main exits non-zero itself

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # @hydra.main configures logging for its job
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "execv", train_here)
            return cli_in_process("run", *args)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def all_runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


SHORT_RUN = ["trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.log_every_n_steps=2", "data.batch_size=4",
             "data.val_sequences=12"]


# Tests that use `swept` run in one xdist worker (`--dist loadgroup`), so it is trained once.
SWEPT_GROUP = pytest.mark.xdist_group("swept")


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
        sweep = run_cli("sweep", "paper_main", "seeds=[0,1]", *SHORT_RUN, "--jobs", "2")
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        failing = run_in_process("balance=loss_free", "seed=7", *SHORT_RUN, "fail_after_steps=2",
                                 "logger.experiment_name=paper_main")
        assert failing.returncode != 0
        report = cli_in_process("report", "paper_main", "--out", str(root / "reports"))  # reads and writes, never execs
        assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return Swept(uri, root, root / "reports" / "paper_main", report.stdout, sweep, failing)

