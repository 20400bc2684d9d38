"""Stopping a sweep with a signal to its command alone: the runs save and are KILLED, nothing is left
running, the same command continues them (real processes: the signal path is what is tested)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from balance_lab.sweeping.stopping import descendants
from tests.helpers.runners import BALANCE_LAB, cli_in_new_process, cli_in_this_process
from tests.helpers.short import LONG, SMALL, short_run
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

    for run in runs:  # each can continue: the test below continues a stopped sweep from such a checkpoint
        assert Path(run.data.tags["balance_lab.checkpoint"]).is_file(), run.data.tags["balance_lab.checkpoint"]


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
