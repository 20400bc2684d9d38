"""Faults, for real: signals sent to a real training process, kill -9, a NaN loss, two sweeps on
one SQLite store at once, and an MLflow server that goes away in the middle of a run."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.groups import SWEPT_GROUP
from tests.helpers.runners import BALANCE_LAB, run_in_this_process, start_run
from tests.helpers.short import LONG, SMALL
from tests.helpers.stores import all_runs, artifact_frame

COMPARED = ["val/loss", "val/maxvio_global", "train/maxvio_batch_mean", "train/maxvio_compute_batch_mean", "train/loss"]


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
    with every metric of a run never interrupted (loss-free: its bias is state that must survive),
    and its routing records (every step's loads, the trace) continued without a gap or a repeat."""
    args = ["balance=loss_free", *LONG, *SMALL, "seed=7", "diagnostics.trace_every=15", "diagnostics.trace_tokens=64"]
    assert run_in_this_process(*args).returncode == 0  # the reference: the same run, never interrupted
    reference = only_run(store)

    checkpoint = tmp_path / "ckpt" / "last.ckpt"
    process = start_run(*args, "checkpoint.every_n_steps=3", f"checkpoint.dir={checkpoint.parent}")
    wait_for(checkpoint, process)
    run_id, first_stop, _ = stop_with(process, signal.SIGTERM, store, checkpoint)
    assert 3 <= first_stop < 40

    saved_ns = checkpoint.stat().st_mtime_ns
    temp_folders = set(Path(tempfile.gettempdir()).glob("balance-lab-resume-*"))
    process = subprocess.Popen(
        [BALANCE_LAB, "run", "--resume", run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(checkpoint, process, since_ns=saved_ns)  # the resumed run has trained on and saved again
    again_id, second_stop, stderr = stop_with(process, signal.SIGINT, store, checkpoint)
    assert again_id == run_id and first_stop < second_stop < 40
    assert f"at step {first_stop} from {checkpoint}" in stderr  # `resuming <name> (<id>) at step N from <ckpt>`
    # the exec'd process cannot clean up a temp folder: the config it trains with lies beside the checkpoint
    assert (checkpoint.parent / "resume_config.yaml").is_file()
    assert set(Path(tempfile.gettempdir()).glob("balance-lab-resume-*")) == temp_folders

    resumed = run_in_this_process("--resume", run_id)  # the last leg: what a resume records, not its process
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {second_stop}" in resumed.stderr
    run = MlflowClient(store).get_run(run_id)
    assert run.info.status == "FINISHED" and "balance_lab.status_reason" not in run.data.tags
    assert len(all_runs(store)) == 2  # continued in the same MLflow run, not a new one
    for key in COMPARED:
        assert run.data.metrics[key] == pytest.approx(reference.data.metrics[key], rel=1e-5, abs=1e-7), key
    steps = [m.step for m in MlflowClient(store).get_metric_history(run_id, "train/loss")]
    assert sorted(steps) == list(range(1, 41)) or sorted(steps) == list(range(0, 40)), steps  # once each
    for artifact in ("loads/steps.parquet", "loads/trace.parquet"):
        resumed_frame, reference_frame = (
            artifact_frame(store, r, artifact, tmp_path / r) for r in (run_id, reference.info.run_id)
        )
        pd.testing.assert_frame_equal(resumed_frame, reference_frame, check_exact=False, rtol=1e-5)
    history = artifact_frame(store, run_id, "loads/steps.parquet", tmp_path / "h")
    assert sorted(set(history["step"])) == list(range(1, 41))  # every step once: no gap, no repeat


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
