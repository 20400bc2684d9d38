"""`balance-lab ui`: the real MLflow server on the store `run`, `sweep` and `report` write to.

The server runs in its own process group so that stopping it (Ctrl-C here, or SIGTERM) stops
its workers too, and the port is free again when this command returns.
"""

from __future__ import annotations

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
            raise ConfigError(f"--port {port}: binding needs privileges on {host}; use a port above 1023 or --port 0") from None
        except OSError as exc:
            if port == 0:
                raise ConfigError(f"--host {host}: cannot bind ({exc.strerror})") from None
            raise ConfigError(f"--port {port} is in use on {host}; choose another port, or --port 0 for a free one") from None
        return probe.getsockname()[1]


def server_command(tracking_uri: str, host: str, port: int) -> list[str]:
    # --serve-artifacts: the UI reads each run's artifacts (plots, loads, config) through the server.
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri, "--host", host,
            "--port", str(port), "--serve-artifacts", "--workers", "1"]


def start(tracking_uri: str, host: str, port: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(server_command(tracking_uri, host, port), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)


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
    """SIGTERM to the server's whole process group, SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # workers of the group that outlived the parent
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def experiments(tracking_uri: str) -> list[tuple[str, int, int]]:
    """(name, runs, sweep invocations) of every experiment that holds a run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    rows = []
    for experiment in client.search_experiments():
        runs = client.search_runs([experiment.experiment_id], max_results=50_000)
        if runs:
            parents = sum(r.data.tags.get("balance_lab.role") == "sweep_parent" for r in runs)
            rows.append((experiment.name, len(runs) - parents, parents))
    return rows


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no server log)"
