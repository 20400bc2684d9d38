"""A tracking store that goes away: during a run, during a sweep, and what it never took (real
`mlflow server`, a TCP gate in front of it: tests/helpers/network.py)."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from balance_lab.ui.server import SERVER_ENV
from tests.helpers.network import Gate, free_port
from tests.helpers.runners import BALANCE_LAB, cli_in_this_process, start_run
from tests.helpers.short import LONG, SMALL


def start_server(backend: str, port: int, log: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **SERVER_ENV},
    )
    import urllib.request

    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


SERVER_GROUP = pytest.mark.xdist_group("mlflow_server")  # the tests of one real server run in one worker


@pytest.fixture(scope="module")
def server_port(tmp_path_factory):
    """One real `mlflow server` for this module's outage tests (each start costs 10-40 s of 2 cores);
    each test puts a gate of its own in front of it and uses experiments of its own."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    server = start_server(f"sqlite:///{folder / 'server.db'}", port, folder / "server.log")
    yield port
    if server.poll() is None:
        stop_server(server)


def runs_of(uri: str, experiment: str):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.mark.slow
@SERVER_GROUP
def test_a_tracking_server_that_goes_away_mid_run_loses_no_metric(store, server_port, monkeypatch, tmp_path):
    """The run talks to a real `mlflow server` through a gate (tests/helpers/network.py) that drops every
    connection and refuses new ones mid-run, then lets them through again: what the client sees of a
    server that goes away and comes back, without paying for a second server start."""
    gate = Gate(server_port)
    gate.open()
    uri = f"http://127.0.0.1:{gate.port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # this test's own queries: fail fast
    process = start_run(
        *LONG, *SMALL, "trainer.max_steps=60", "trainer.val_check_interval=30", "logger.experiment_name=outage-run"
    )
    try:
        deadline = time.monotonic() + 120
        while not any("train/loss" in r.data.metrics for r in runs_of(uri, "outage-run")):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-2000:]
            time.sleep(0.2)
        gate.close()  # the server vanishes mid-run...
        time.sleep(4)
        assert process.poll() is None, "training died with the server"  # training on, or waiting for the store
        time.sleep(2)  # a fast machine ends the run while the store is away (CI did): the final wait is covered
        gate.open()  # ...and comes back
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        assert "the tracking store does not answer" in stderr and "everything kept was delivered" in stderr
        (run,) = runs_of(uri, "outage-run")
        assert run.info.status == "FINISHED"
        history = MlflowClient(uri).get_metric_history(run.info.run_id, "train/loss")
        steps = sorted(m.step for m in history)  # every step once: nothing lost, nothing delivered twice
        assert steps == list(range(1, 61)) or steps == list(range(0, 60)), steps
        # logged at the end
        loads = MlflowClient(uri).download_artifacts(run.info.run_id, "loads/val_loads.json", str(tmp_path))
        assert "domains" in Path(loads).read_text()
    finally:
        if process.poll() is None:
            process.kill()
        gate.close()


@pytest.mark.slow
@SERVER_GROUP
def test_a_store_outage_during_a_sweep_loses_no_run_state_or_metric(store, server_port, monkeypatch, tmp_path):
    """The sweep's command watches its runs through the outage, its jobs train on, and when the store
    is back every state and metric arrives: the report counts each run once."""
    gate = Gate(server_port)
    gate.open()
    uri = f"http://127.0.0.1:{gate.port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    args = [
        "sweep",
        "paper_main",
        "seeds=[0]",
        *LONG,
        *SMALL,
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        "--jobs",
        "2",
    ]
    sweep = subprocess.Popen([BALANCE_LAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while sum("train/loss" in r.data.metrics for r in runs_of(uri, "paper_main")) < 2:
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-3000:]
            time.sleep(0.2)
        gate.close()  # the server vanishes while both runs train and the command watches them...
        time.sleep(8)
        assert sweep.poll() is None, "the sweep died with the server: " + sweep.communicate()[1][-3000:]
        gate.open()  # ...and comes back
        stdout, stderr = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, stdout[-3000:] + stderr[-3000:]
        runs = runs_of(uri, "paper_main")
        parents = [r for r in runs if r.data.tags.get("balance_lab.role") == "sweep_parent"]
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED"]
        for child in children:
            steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(child.info.run_id, "train/loss"))
            assert steps == list(range(1, 41)) or steps == list(range(0, 40)), steps
        downloads = tmp_path / "downloads"  # where the report's artifact reads from the server go ...
        downloads.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(downloads))
        report = cli_in_this_process("report", "paper_main", "--format", "csv", "--no-write")
        assert report.returncode == 0, report.stderr[-2000:]
        assert not list(downloads.iterdir())  # ... and are removed once read
        assert [line.split(",")[1] for line in report.stdout.splitlines()[1:]] == ["1", "1"]  # n_seeds: once each
    finally:
        if sweep.poll() is None:
            sweep.kill()
        gate.close()


def test_what_a_store_never_took_is_written_down_and_replayed(store, tmp_path, monkeypatch):
    from mlflow.entities import Metric

    from balance_lab.store.outbox import Outbox, replay

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    target = MlflowClient(store)
    run_id = target.create_run(target.create_experiment("outbox")).info.run_id
    outbox = Outbox(MlflowClient("http://127.0.0.1:9"), run_id, retry_seconds=0)  # nothing listens on port 9
    outbox.log_batch([Metric("train/loss", 5.0 - step, 1_700_000_000_000 + step, step) for step in range(3)])
    outbox.set_tag("balance_lab.warning", "first")
    outbox.set_tag("balance_lab.warning", "routing collapse")  # the latest value of a tag wins
    outbox.log_text('{"layers": []}', "loads/val_loads.json")
    assert len(outbox) == 5 and outbox.outages == 1
    spilled = outbox.close(tmp_path / "unsent.jsonl", waits=())
    assert spilled == tmp_path / "unsent.jsonl" and len(spilled.read_text().splitlines()) == 5

    assert replay(target, spilled) == (5, {run_id})
    history = target.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 5.0), (1, 4.0), (2, 3.0)]
    assert target.get_run(run_id).data.tags["balance_lab.warning"] == "routing collapse"
    replayed = Path(target.download_artifacts(run_id, "loads/val_loads.json", str(tmp_path)))
    assert replayed.read_text() == '{"layers": []}'
