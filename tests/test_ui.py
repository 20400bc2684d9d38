"""`balance-lab ui`: a real MLflow server on a store holding a real small sweep, read through its REST API."""

import json
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import BALANCE_LAB, run_cli

pytestmark = pytest.mark.slow  # uses the session's small sweep (trained once, shared with the report tests)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    uri, _, _ = swept
    port = free_port()
    process = subprocess.Popen([BALANCE_LAB, "ui", "--port", str(port), "--tracking-uri", uri],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
        runs = api(base, "runs/search", body={"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        (parent,) = [r for r, t in zip(runs, tags) if t.get("balance_lab.role") == "sweep_parent"]
        parent_id = parent["info"]["run_id"]
        children = [(r, t) for r, t in zip(runs, tags) if t.get("mlflow.parentRunId") == parent_id]
        assert len(children) == 4
        assert {t["mlflow.runName"] for _, t in children} == {
            "aux_loss-a1e-3-micro-tiny-s0", "aux_loss-a1e-3-micro-tiny-s1",
            "loss_free-u1e-3-sign-add-tiny-s0", "loss_free-u1e-3-sign-add-tiny-s1"}
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
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in out
    wait_for(lambda: not port_is_open(port), 10, "the port to be released")


def test_a_port_in_use_is_a_one_line_error(swept):
    uri, _, _ = swept
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("ui", "--port", str(port), "--tracking-uri", uri, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: --port {port} is in use on 127.0.0.1; choose another port, "
                                     "or --port 0 for a free one")


def test_a_missing_store_is_a_one_line_error(tmp_path):
    result = run_cli("ui", "--tracking-uri", f"sqlite:///{tmp_path / 'absent.db'}", timeout=60)
    assert result.returncode == 2 and "no MLflow store" in result.stderr
    assert not (tmp_path / "absent.db").exists()
