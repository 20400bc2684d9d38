"""`balance-lab ui`: a real MLflow server on a store holding a real small sweep, read through its REST API."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from balance_lab.ui.port_owner import command_line, group_members, listening_pids
from balance_lab.ui.server import SERVER_ENV
from tests.helpers.groups import SWEPT_GROUP
from tests.helpers.network import free_port
from tests.helpers.runners import BALANCE_LAB, cli_in_new_process

pytestmark = [
    pytest.mark.slow,
    SWEPT_GROUP,
]  # uses the session's small sweep (trained once, shared with the report tests)


def api(base: str, path: str, params: dict | None = None, body: dict | None = None) -> dict:
    url = f"{base}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_ui_serves_the_sweep_through_the_rest_api_and_stops_cleanly(swept):
    uri = swept.uri
    port = free_port()
    process = subprocess.Popen(
        [BALANCE_LAB, "ui", "--port", str(port), "--tracking-uri", uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    printed = []
    try:
        # the command says where the UI is once the server answers, then lists the experiments
        for line in process.stdout:
            printed.append(line)
            if "Ctrl-C to stop" in line:
                break
        assert process.poll() is None, "".join(printed) + process.stderr.read()
        summary = "".join(printed)
        assert f"MLflow UI: {base}" in summary and "paper_main" in summary
        experiment = api(base, "experiments/get-by-name", {"experiment_name": "paper_main"})["experiment"]
        runs = api(base, "runs/search", body={"experiment_ids": [experiment["experiment_id"]], "max_results": 100})[
            "runs"
        ]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        (parent,) = [r for r, t in zip(runs, tags) if t.get("balance_lab.role") == "sweep_parent"]
        parent_id = parent["info"]["run_id"]
        children = [(r, t) for r, t in zip(runs, tags) if t.get("mlflow.parentRunId") == parent_id]
        assert len(children) == 4
        assert {t["mlflow.runName"] for _, t in children} == {
            "aux_loss-a1e-3-micro-tiny-s0",
            "aux_loss-a1e-3-micro-tiny-s1",
            "loss_free-u1e-2-sign-add-tiny-s0",
            "loss_free-u1e-2-sign-add-tiny-s1",
        }
        for run, tag in children:
            metrics = {m["key"] for m in run["data"]["metrics"]}
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            assert {"val/ppl", "val/maxvio_global", "train/maxvio_batch", "val/maxvio_global/layer_1"} <= metrics
            assert params["balance.name"] == tag["sweep.balance"] and params["seed"] == tag["sweep.seed"]
            artifacts = api(base, "artifacts/list", {"run_id": run["info"]["run_id"]})
            assert {"config.yaml", "loads"} <= {f["path"] for f in artifacts["files"]}
        plots = api(base, "artifacts/list", {"run_id": parent_id, "path": "plots"})
        assert {f["path"] for f in plots["files"]} >= {"plots/ppl_vs_maxvio.png", "plots/expert_loads.png"}
        # the server streams the artifact itself (what the UI shows)
        with urllib.request.urlopen(f"{base}/get-artifact?path=plots/ppl_vs_maxvio.png&run_uuid={parent_id}") as r:
            assert r.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            out, err = process.communicate(timeout=60)  # stop() itself gives up on the server after 15 s
        except subprocess.TimeoutExpired:
            process.terminate()  # SIGTERM stops its server too (ui/server.py: stop_on_sigterm)
            process.communicate(timeout=60)
            raise AssertionError("balance-lab ui did not stop on Ctrl-C within 60 s") from None
    assert process.returncode == 0, err
    assert "stopped" in out
    log_path = Path(re.search(r"server log\s+(\S+?)\)", summary).group(1))
    assert not log_path.parent.exists()  # a clean stop leaves no temp folder behind
    wait_for(lambda: not port_is_open(port), 10, "the port to be released")


def test_a_port_in_use_is_a_one_line_error(swept):
    uri = swept.uri
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli_in_new_process("ui", "--port", str(port), "--tracking-uri", uri, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: --port {port} is in use on 127.0.0.1, held by pid {os.getpid()} "
        f"({command_line(os.getpid())[:80]}); choose another port, or --port 0 for a free one"
    )


def wait_for_server(port: int, process: subprocess.Popen | None = None) -> int:
    """The process group of the MLflow server that answers on `port`, once it answers."""
    deadline = time.monotonic() + 120
    while True:
        assert process is None or process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the MLflow server never answered"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    return os.getpgid(listening_pids(port)[0])


def test_kill_9_of_the_ui_takes_its_server_and_workers_with_it(swept, tmp_path):
    uri = swept.uri
    port = free_port()
    ui = subprocess.Popen(
        [BALANCE_LAB, "ui", "--port", str(port), "--tracking-uri", uri],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the server log a killed ui cannot remove lands here
    )
    group = wait_for_server(port, ui)
    try:
        assert len(group_members(group)) >= 3  # guard, mlflow server, uvicorn (+ MLflow's job runner and consumers)
        second = cli_in_new_process("ui", "--port", str(port), "--tracking-uri", uri, timeout=60)
        assert (
            second.returncode == 2
            and (f"held by the MLflow server of a running balance-lab ui (pid {ui.pid}, store {uri}): use that one")
            in second.stderr
        ), second.stderr
        ui.kill()  # SIGKILL to balance-lab alone: nothing of it runs to stop the server
        ui.wait()
        wait_for(lambda: not group_members(group), 30, f"the server's process group to end ({group_members(group)})")
        assert not port_is_open(port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def test_a_server_nobody_stops_is_named_with_the_command_that_frees_the_port(swept, tmp_path):
    """What a balance-lab ui before the guard left behind when killed: a server in its own session."""
    uri = swept.uri
    port = free_port()
    leftover = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **SERVER_ENV},
    )
    group = wait_for_server(port, leftover)
    try:
        result = cli_in_new_process("ui", "--port", str(port), "--tracking-uri", uri, timeout=60)
        assert result.returncode == 2
        assert (
            f"held by an MLflow server (pid {listening_pids(port)[0]}, store {uri}) that nobody stops" in result.stderr
        )
        command = result.stderr.split("stop it with: ")[1].split(";")[0]
        assert command == f"kill -- -{group}"
        subprocess.run(command, shell=True, check=True)  # what the message says to do frees the port
        wait_for(lambda: not port_is_open(port), 30, "the port to be released")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        leftover.wait()


def test_a_missing_store_is_a_one_line_error(tmp_path):
    result = cli_in_new_process("ui", "--tracking-uri", f"sqlite:///{tmp_path / 'absent.db'}", timeout=60)
    assert result.returncode == 2 and "no MLflow store" in result.stderr
    assert not (tmp_path / "absent.db").exists()
