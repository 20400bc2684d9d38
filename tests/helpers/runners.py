"""Running `balance-lab`: in a new process as a user does, or through the CLI's own code in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BALANCE_LAB = str(Path(sys.executable).with_name("balance-lab"))


def cli_in_new_process(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`balance-lab ARGS...` as a user runs it: a real process, in the current directory and environment."""
    return subprocess.run([BALANCE_LAB, *args], capture_output=True, text=True, timeout=timeout)


def cli_in_this_process(*args: str) -> subprocess.CompletedProcess:
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


def run_in_this_process(*args: str) -> subprocess.CompletedProcess:
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
            return cli_in_this_process("run", *args)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def start_run(*args: str) -> subprocess.Popen:
    """`balance-lab run ARGS...` started as a real process (pipes for its output), not waited for."""
    return subprocess.Popen([BALANCE_LAB, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
