"""Stopping a sweep with a signal to its command alone: the runs save and are KILLED, nothing is left
running, the same command continues them (real processes: the signal path is what is tested)."""

import os
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from balance_lab.sweeping.stopping import descendants
from tests.helpers.runners import BALANCE_LAB, cli_in_new_process
from tests.helpers.short import SMALL, short_run
from tests.helpers.stores import all_runs


def children(store):
    return [r for r in all_runs(store) if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow
def test_sigterm_to_the_sweep_pid_alone_stops_every_run_once_and_leaves_no_process(store):
    """Two runs training at once (--jobs 2: Hydra's joblib driver and its workers); SIGTERM to the
    `balance-lab sweep` process only, as a service manager or scheduler sends it."""
    args = [
        "sweep",
        "paper_main",
        "seeds=[0]",
        *SMALL,
        *short_run(steps=80, val_every=40),
        "checkpoint.every_n_steps=2",
        "trainer.enable_progress_bar=false",
        "--jobs",
        "2",
    ]
    sweep = subprocess.Popen([BALANCE_LAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len([r for r in children(store) if "balance_lab.checkpoint" in r.data.tags]) < 2:  # both are training
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-3000:]
        time.sleep(0.1)
    below = descendants(sweep.pid)
    assert below, "the sweep's driver and jobs"
    os.kill(sweep.pid, signal.SIGTERM)
    _, stderr = sweep.communicate(timeout=240)
    assert sweep.returncode == 143, stderr[-3000:]
    assert "run the same command again" in stderr
    alive = [
        pid
        for pid in below
        if os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] not in ("Z", "X")
    ]
    assert not alive, f"processes of the sweep outlived it: {alive}"

    runs = children(store)
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"], [(r.info.run_name, r.info.status) for r in runs]
    for run in runs:  # each had the stop once and saved: the first-signal path, with its checkpoint
        assert run.data.tags["balance_lab.status_reason"].startswith("Interrupted: stopped by SIGTERM at step")
    (parent,) = [r for r in all_runs(store) if r.data.tags.get("balance_lab.role") == "sweep_parent"]
    assert parent.info.status == "KILLED" and parent.data.tags["balance_lab.status_reason"].startswith(
        "stopped by SIGTERM"
    )

    again = cli_in_new_process(*args)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    client = MlflowClient(store)
    for run in runs:  # the same MLflow runs, continued from their checkpoints to the end
        continued = client.get_run(run.info.run_id)
        assert continued.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert len(steps) == len(set(steps)) and max(steps) >= 79, steps
    assert len(children(store)) == 2
