"""Faults, for real: signals sent to a real training process, kill -9, a NaN loss, two sweeps on
one SQLite store at once, and an MLflow server that goes away in the middle of a run."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from balance_lab.ui.server import SERVER_ENV
from tests.helpers.groups import SWEPT_GROUP
from tests.helpers.network import Gate, free_port
from tests.helpers.runners import BALANCE_LAB, cli_in_new_process, cli_in_this_process, run_in_this_process
from tests.helpers.short import SMALL
from tests.helpers.stores import all_runs

LONG = [
    "trainer.max_steps=40",
    "trainer.val_check_interval=20",
    "trainer.log_every_n_steps=1",
    "data.batch_size=4",
    "data.val_sequences=12",
    "trainer.enable_progress_bar=false",
]
COMPARED = ["val/loss", "val/maxvio_global", "train/maxvio_batch_mean", "train/maxvio_compute_batch_mean", "train/loss"]


def start_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([BALANCE_LAB, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120, since_ns: int | None = None) -> None:
    """Until `path` exists; with `since_ns`, until it is rewritten after that mtime (checkpoints are
    replaced whole: a new inode and mtime)."""
    deadline = time.monotonic() + timeout
    while not path.exists() or (since_ns is not None and path.stat().st_mtime_ns == since_ns):
        if process.poll() is not None:
            raise AssertionError(
                f"training ended (status {process.returncode}) before {path} was written: "
                f"{process.stderr.read()[-2000:]}"
            )
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.02)


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (from /proc: no pgrep needed)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # the process ended while we looked
            pass
    return pids


def wait_until_group_is_dead(pgid: int, timeout: float = 60) -> None:
    """Until no process of group `pgid` is still running (zombies are dead): SIGKILL is delivered at
    once, but a loaded machine can take a moment to end a process that holds a model and a store."""
    from balance_lab.store.liveness import stat_fields

    deadline = time.monotonic() + timeout
    while True:
        stats = {int(entry.name): stat_fields(int(entry.name)) for entry in Path("/proc").glob("[0-9]*")}
        alive = [
            pid
            for pid, fields in stats.items()  # fields: state, parent, group, ... (None: it just ended)
            if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X")
        ]
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes {alive} of group {pgid} outlived SIGKILL"
        time.sleep(0.05)


def only_run(store: str, status: str | None = None):
    runs = [r for r in all_runs(store) if status is None or r.info.status == status]
    assert len(runs) == 1, [(r.info.run_name, r.info.status) for r in all_runs(store)]
    return runs[0]


def stop_with(process: subprocess.Popen, signum: int, store: str, checkpoint: Path) -> tuple[str, int, str]:
    """Send `signum`; check the run is KILLED with its reason and checkpoint; (its run id, the step
    it stopped at, what the process printed to stderr)."""
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-2000:]
    killed = only_run(store, "KILLED")
    assert f"stopped by {signal.Signals(signum).name} at step" in killed.data.tags["balance_lab.status_reason"]
    assert killed.data.tags["balance_lab.checkpoint"] == str(checkpoint)
    assert f"balance-lab run --resume {killed.info.run_id}" in stderr
    return killed.info.run_id, int(stderr.split("stopped by ")[1].split(" at step ")[1].split(";")[0]), stderr


@pytest.mark.slow
def test_signals_save_mark_killed_and_twice_resumed_the_run_equals_an_uninterrupted_one(store, tmp_path):
    """SIGTERM, resume, SIGINT to the resumed process, resume again: the same MLflow run ends FINISHED
    with every metric of a run never interrupted (loss-free: its bias is state that must survive)."""
    args = ["balance=loss_free", *LONG, *SMALL, "seed=7"]
    assert run_in_this_process(*args).returncode == 0  # the reference: the same run, never interrupted
    reference = only_run(store)

    checkpoint = tmp_path / "ckpt" / "last.ckpt"
    process = start_run(*args, "checkpoint.every_n_steps=3", f"checkpoint.dir={checkpoint.parent}")
    wait_for(checkpoint, process)
    run_id, first_stop, _ = stop_with(process, signal.SIGTERM, store, checkpoint)
    assert 3 <= first_stop < 40

    saved_ns = checkpoint.stat().st_mtime_ns
    process = subprocess.Popen(
        [BALANCE_LAB, "run", "--resume", run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(checkpoint, process, since_ns=saved_ns)  # the resumed run has trained on and saved again
    again_id, second_stop, stderr = stop_with(process, signal.SIGINT, store, checkpoint)
    assert again_id == run_id and first_stop < second_stop < 40
    assert f"at step {first_stop} from {checkpoint}" in stderr  # `resuming <name> (<id>) at step N from <ckpt>`

    resumed = run_in_this_process("--resume", run_id)  # the last leg: what a resume records, not its process
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {second_stop}" in resumed.stderr
    run = MlflowClient(store).get_run(run_id)
    assert run.info.status == "FINISHED" and "balance_lab.status_reason" not in run.data.tags
    assert len(all_runs(store)) == 2  # continued in the same MLflow run, not a new one
    for key in COMPARED:
        assert run.data.metrics[key] == pytest.approx(reference.data.metrics[key], rel=1e-5, abs=1e-7), key
    steps = [m.step for m in MlflowClient(store).get_metric_history(run_id, "train/loss")]
    assert sorted(set(steps)) == list(range(1, 41)) or sorted(set(steps)) == list(range(0, 40)), steps


@pytest.mark.slow
def test_resume_refuses_a_run_whose_process_is_alive(store, tmp_path):
    checkpoint = tmp_path / "ckpt" / "last.ckpt"
    process = start_run(
        *LONG, *SMALL, "trainer.max_steps=400", "checkpoint.every_n_steps=2", f"checkpoint.dir={checkpoint.parent}"
    )
    try:
        wait_for(checkpoint, process)
        result = run_in_this_process("--resume", only_run(store).info.run_id)  # refused before any exec
        assert result.returncode == 2 and "is RUNNING (process" in result.stderr and "is running" in result.stderr
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
@SWEPT_GROUP
def test_an_exception_marks_failed_with_the_reason_in_one_line(swept):
    result = swept.failing  # `balance-lab run ... fail_after_steps=2` beside the session's sweep (conftest; an
    # exception that escaped the entry point would put its traceback in stderr there too)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: run failed: RuntimeError: fail_after_steps=2")
    assert "Traceback" not in result.stderr
    run = only_run(swept.uri, "FAILED")
    assert run.data.params["seed"] == "7"
    assert "fail_after_steps=2 reached" in run.data.tags["balance_lab.status_reason"]


@pytest.mark.slow
def test_a_signal_to_rank_zero_stops_every_ddp_rank_at_the_same_step(store, tmp_path):
    """Two gloo processes (Lightning re-executes the command for rank 1); SIGTERM reaches rank 0
    only: both ranks must stop after the same optimizer step, save one checkpoint and exit."""
    import torch

    checkpoint = tmp_path / "ckpt" / "last.ckpt"
    process = start_run(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        *LONG,
        "trainer.max_steps=60",
        "model.n_layers=3",
        "model.seq_len=32",
        "checkpoint.every_n_steps=2",
        f"checkpoint.dir={checkpoint.parent}",
    )
    wait_for(checkpoint, process, timeout=180)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-3000:]
    stopped_at = int(stderr.split(" at step ")[1].split(";")[0])
    assert 2 <= stopped_at < 60
    killed = only_run(store, "KILLED")
    assert f"stopped by SIGTERM at step {stopped_at}" in killed.data.tags["balance_lab.status_reason"]
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["global_step"] == stopped_at  # rank 1 stopped there too: the save is collective
    deadline = time.monotonic() + 30  # rank 1 is Lightning's child: it may take a moment to exit
    while processes_mentioning(str(checkpoint.parent)):
        assert time.monotonic() < deadline, f"a rank outlived the run: {processes_mentioning(str(checkpoint.parent))}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_instead_of_training_on(store):
    result = run_in_this_process(*LONG, "model.init_std=1e30")  # logits overflow: the loss is not finite at once
    assert result.returncode == 1, result.stderr[-2000:]
    assert "NonFiniteLoss: train/loss is nan at step " in result.stderr  # step 0 or 1: the first update overflows
    run = only_run(store)
    assert run.info.status == "FAILED" and "NonFiniteLoss" in run.data.tags["balance_lab.status_reason"]


@pytest.mark.slow
def test_two_sweeps_on_one_sqlite_store_at_once_lose_no_run_and_no_metric(store):
    short = [
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1",
        "data.batch_size=4",
        "data.val_sequences=12",
    ]
    # --jobs 1: each sweep trains its runs one after the other in its own process; the two sweeps
    # (one run each at any moment) write to the store at once
    sweeps = [
        subprocess.Popen(
            [BALANCE_LAB, "sweep", "paper_main", f"seeds=[{s}]", *short, "--jobs", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in (0, 1)
    ]
    for process in sweeps:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, out[-3000:] + err[-3000:]
    client = MlflowClient(store)
    runs = all_runs(store)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and len(children) == 4
    assert len({r.info.experiment_id for r in runs}) == 1  # one experiment, created once despite the race
    for run in children:
        assert run.info.status == "FINISHED"
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
        assert len(steps) == 6, (run.info.run_name, steps)
        assert "val/ppl" in run.data.metrics


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
def test_a_tracking_server_that_goes_away_mid_run_loses_no_metric(store, server_port, monkeypatch):
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
        steps = sorted({m.step for m in history})
        assert steps == list(range(1, 61)) or steps == list(range(0, 60)), steps
        loads = MlflowClient(uri).download_artifacts(run.info.run_id, "loads/val_loads.json")  # logged at the end
        assert "domains" in Path(loads).read_text()
    finally:
        if process.poll() is None:
            process.kill()
        gate.close()


@pytest.mark.slow
@SERVER_GROUP
def test_a_store_outage_during_a_sweep_loses_no_run_state_or_metric(store, server_port, monkeypatch):
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
            steps = sorted({m.step for m in MlflowClient(uri).get_metric_history(child.info.run_id, "train/loss")})
            assert steps == list(range(1, 41)) or steps == list(range(0, 40)), steps
        report = cli_in_this_process("report", "paper_main", "--format", "csv", "--no-write")
        assert report.returncode == 0, report.stderr[-2000:]
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
    assert Path(target.download_artifacts(run_id, "loads/val_loads.json")).read_text() == '{"layers": []}'


@pytest.mark.slow
def test_an_interrupted_sweep_continues_its_stopped_run_from_the_checkpoint(store, tmp_path):
    args = ["sweep", "paper_main", "seeds=[0]", *LONG, *SMALL, "trainer.max_steps=20", "checkpoint.every_n_steps=2"]
    sweep = subprocess.Popen(
        [BALANCE_LAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )  # its own process group, as a terminal's foreground job
    deadline = time.monotonic() + 180
    while not list(Path("multirun").rglob("last.ckpt")):
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-2000:]
        time.sleep(0.05)
    os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130 and "run the same command again" in stderr, stderr[-2000:]
    # the command returned once its run had saved and ended: nothing of the sweep is left running
    killed = [r for r in all_runs(store) if r.info.status == "KILLED" and "mlflow.parentRunId" in r.data.tags]
    assert len(killed) == 1 and killed[0].data.tags["balance_lab.checkpoint"].endswith("last.ckpt")
    # the run had the stop once (a second signal would stop it without its own checkpoint)
    assert killed[0].data.tags["balance_lab.status_reason"].startswith("Interrupted: stopped by SIGINT at step")
    again = cli_in_new_process(*args)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    continued = MlflowClient(store).get_run(killed[0].info.run_id)
    assert continued.info.status == "FINISHED"  # the same run, continued, not a new one
    children = [r for r in all_runs(store) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.info.status for r in children) == ["FINISHED", "FINISHED"] and len(children) == 2
    steps = [m.step for m in MlflowClient(store).get_metric_history(continued.info.run_id, "train/loss")]
    assert sorted(set(steps)) in (list(range(0, 20)), list(range(1, 21))) and len(steps) == len(set(steps)), steps


@pytest.mark.slow
def test_kill_9_of_a_sweep_leaves_nothing_running_after_runs_stale_and_the_rerun_counts_it(store, tmp_path):
    # one point (loss-free, seed 0): the interrupted-sweep test above covers a point never started
    args = [
        "sweep",
        "paper_main",
        "seeds=[0]",
        "balance=loss_free",
        *LONG,
        *SMALL,
        "trainer.max_steps=20",
        "checkpoint.every_n_steps=2",
    ]
    sweep = subprocess.Popen(
        [BALANCE_LAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while not list(Path("multirun").rglob("last.ckpt")):
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-2000:]
        time.sleep(0.05)
    while not [r for r in all_runs(store) if "balance_lab.checkpoint" in r.data.tags]:  # recorded: it can continue
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-2000:]
        time.sleep(0.05)
    # a lost node, the OOM killer: every process at once (the sweep's jobs run in a session of their own)
    from balance_lab.sweeping.stopping import descendants

    groups = {sweep.pid} | {os.getpgid(pid) for pid in descendants(sweep.pid)}
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    sweep.wait()
    for group in groups:
        wait_until_group_is_dead(group)  # the training process too (a loaded run once listed it while it died)
    running = [r for r in all_runs(store) if r.info.status == "RUNNING"]
    assert len(running) == 2, [(r.info.run_name, r.info.status) for r in all_runs(store)]  # parent + first child

    listed = cli_in_this_process("runs", "--stale", "--dry-run")  # look first: nothing changes
    assert listed.returncode == 0 and listed.stdout.count("would mark KILLED") == 2, listed.stdout + listed.stderr
    assert all(r.info.run_id in listed.stdout for r in running)
    assert len([r for r in all_runs(store) if r.info.status == "RUNNING"]) == 2
    marked = cli_in_this_process("runs", "--stale")
    assert marked.returncode == 0 and "2 stale run(s)" in marked.stdout, marked.stdout + marked.stderr
    assert "run the same sweep again to continue its stopped runs: balance-lab sweep paper_main" in marked.stdout
    assert not [r for r in all_runs(store) if r.info.status == "RUNNING"]
    (parent,) = [r for r in all_runs(store) if r.data.tags.get("balance_lab.role") == "sweep_parent"]
    assert parent.info.status == "KILLED"
    assert parent.data.tags["balance_lab.status_reason"].startswith("the sweep's process died without a word (process")
    (child,) = [r for r in all_runs(store) if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "KILLED" and "is gone" in child.data.tags["balance_lab.status_reason"]
    assert f"resume: balance-lab run --resume {child.info.run_id}" in marked.stdout

    again = cli_in_new_process(*args)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    children = [r for r in all_runs(store) if "mlflow.parentRunId" in r.data.tags]
    assert [r.info.status for r in children] == ["FINISHED"], [(r.info.run_name, r.info.status) for r in children]
    assert children[0].info.run_id == child.info.run_id  # the killed run continued, in the same MLflow run
    report = cli_in_this_process("report", "paper_main", "--format", "md", "--no-write")
    assert report.returncode == 0, report.stderr[-2000:]
    assert "Sweep invocations: 2 (1 FINISHED, 1 KILLED)" in report.stdout
    assert "## Runs not counted" not in report.stdout  # the killed run continued and finished: counted once


def test_a_killed_process_its_parent_has_not_reaped_yet_is_gone():
    """A zombie still has a /proc entry (and kill(pid, 0) succeeds): `runs --stale` run right after a
    kill -9 must not take it for the run's living owner."""
    from balance_lab.store.liveness import TAG_HOST, TAG_PID, TAG_PID_START, _start_ticks, owner_of

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(child.pid), TAG_PID_START: _start_ticks(child.pid)}
        assert owner_of(tags).state == "alive"
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (
            Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        ):  # not reaped: we are its parent
            assert time.monotonic() < deadline
            time.sleep(0.01)
        owner = owner_of(tags)
        assert owner.state == "gone" and "has not reaped it" in owner.detail, owner
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    "user_env, expected",
    [
        ({}, {"MLFLOW_DISABLE_TELEMETRY": "true"}),  # nobody decided: off
        ({"MLFLOW_DISABLE_TELEMETRY": "false"}, {"MLFLOW_DISABLE_TELEMETRY": "false"}),  # the user wants it on
        ({"DO_NOT_TRACK": "1"}, {"DO_NOT_TRACK": "1"}),  # the user's own opt-out, left as it is
    ],
)
def test_mlflow_telemetry_is_off_in_balance_labs_processes_unless_the_user_decided(user_env, expected):
    """The CLI's process and what it starts (here: a child that prints its environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")} | user_env
    code = (
        "import balance_lab.cli, os, subprocess, sys; "
        "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get(\"MLFLOW_DISABLE_TELEMETRY\"),"
        ' os.environ.get("DO_NOT_TRACK"))\'], capture_output=True, text=True).stdout.strip())'
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [expected.get("MLFLOW_DISABLE_TELEMETRY", "None"), expected.get("DO_NOT_TRACK", "None")]
