"""`balance-lab ui`: the real MLflow server on the store `run`, `sweep` and `report` write to.

The server runs in its own process group so that stopping it (Ctrl-C here, or SIGTERM) stops
its workers too, and the port is free again when this command returns. A guard process leads
that group (guard.py) and stops it when balance-lab dies without a word (kill -9).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from balance_lab.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
READY_TIMEOUT_S = 90.0


def choose_port(host: str, port: int) -> int:
    """`port` if it can be bound on `host`, a free one when `port` is 0; ConfigError when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except PermissionError:
            raise ConfigError(
                f"--port {port}: binding needs privileges on {host}; use a port above 1023 or --port 0"
            ) from None
        except OSError as exc:
            if port == 0 or exc.errno != errno.EADDRINUSE:  # a host that is not this machine's, or no host at all
                raise ConfigError(f"--host {host}: cannot bind ({exc.strerror or exc})") from None
            raise ConfigError(
                f"--port {port} is in use on {host}{_held_by(port)}; choose another port, or --port 0 for a free one"
            ) from None
        return probe.getsockname()[1]


def _held_by(port: int) -> str:
    """', held by ...' naming the MLflow server on the port and how to stop it, when /proc tells; else ''."""
    from balance_lab.ui.port_owner import command_line, listening_pids, process_group

    for pid in listening_pids(port):
        group = process_group(pid)
        leader = command_line(group) if group else ""
        if "mlflow" not in command_line(pid) + leader:
            return f", held by pid {pid} ({' '.join(command_line(pid).split())[:80] or '?'})"  # one line
        store = _option(leader, "--backend-store-uri") or "?"
        owner = _option(leader, "balance_lab.ui.guard")
        if owner and owner.isdigit() and os.path.exists(f"/proc/{owner}"):
            return f", held by the MLflow server of a running balance-lab ui (pid {owner}, store {store}): use that one"
        return (
            f", held by an MLflow server (pid {pid}, store {store}) that nobody stops (a balance-lab ui that was "
            f"killed?); stop it with: kill -- -{group}"
        )
    return ""


def _option(command: str, name: str) -> str | None:
    words = command.split()
    return words[words.index(name) + 1] if name in words[:-1] else None


# MLflow 3's job execution (GenAI judges, scheduled tasks) starts a job runner and four or more queue
# consumers beside the server, each a Python process importing MLflow (~175 MB, seconds of CPU each):
# the UI of training runs uses none of it. MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true keeps it.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def server_command(tracking_uri: str, host: str, port: int) -> list[str]:
    # --serve-artifacts: the UI reads each run's artifacts (plots, loads, config) through the server.
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--serve-artifacts",
        "--workers",
        "1",
    ]


def start(tracking_uri: str, host: str, port: int, log_path: Path) -> subprocess.Popen:
    """The server under its guard, in a new session: the returned process leads the server's group."""
    log = open(log_path, "w")
    env = {**SERVER_ENV, **os.environ, "PYTHONUNBUFFERED": "1"}  # the user's own setting wins
    guarded = [
        sys.executable,
        "-m",
        "balance_lab.ui.guard",
        str(os.getpid()),
        "--",
        *server_command(tracking_uri, host, port),
    ]
    return subprocess.Popen(guarded, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def wait_ready(process: subprocess.Popen, url: str, log_path: Path, timeout: float = READY_TIMEOUT_S) -> None:
    """Until /health answers; RuntimeError with the server's last lines if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the MLflow server exited with status {process.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the MLflow server did not answer within {timeout:.0f} s:\n{_tail(log_path)}")


def stop_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, so the `finally` that stops the server runs (the server is in
    its own process group and would otherwise outlive this process)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the server's whole process group, SIGKILL after `grace` seconds. The group is
    signalled even when its leader (the guard) has already exited: its workers may not have."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return  # nobody is left in the group
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # workers of the group that outlived the leader
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def experiments(tracking_uri: str) -> list[tuple[str, int, int]]:
    """(name, runs, sweep invocations) of every experiment that holds a run."""
    from mlflow.tracking import MlflowClient

    from balance_lab.store.tracking import ROLE_SWEEP_PARENT, TAG_ROLE

    client = MlflowClient(tracking_uri)
    rows = []
    for experiment in client.search_experiments():
        runs = client.search_runs([experiment.experiment_id], max_results=50_000)
        if runs:
            parents = sum(r.data.tags.get(TAG_ROLE) == ROLE_SWEEP_PARENT for r in runs)
            rows.append((experiment.name, len(runs) - parents, parents))
    return rows


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no server log)"
