"""Trainings started separately on one machine share its cores (training/core_share.py)."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers.runners import BALANCE_LAB
from tests.helpers.short import SMALL, short_run


def register(registry, process, run: str, threads: int | None = None) -> None:
    """What a training's CoreShare writes for itself (training/core_share.py)."""
    from balance_lab.store.liveness import stat_fields

    entry = {"pid": process.pid, "start": stat_fields(process.pid)[19], "run": run, "threads": threads}
    (registry / str(process.pid)).write_text(json.dumps(entry))


@pytest.mark.slow
def test_a_run_started_beside_another_training_takes_its_share_of_the_cores_and_says_so(store, tmp_path):
    registry = tmp_path / "trainings"
    registry.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a training already running
    try:
        register(registry, other, "the-other-run")
        (registry / "999999999").write_text(json.dumps({"pid": 999999999, "start": "1", "run": "long-gone"}))
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {
            "BALANCE_LAB_TRAININGS_DIR": str(registry)
        }
        result = subprocess.run(
            [BALANCE_LAB, "run", *SMALL, *short_run(steps=3, val_every=3)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        other.kill()
        other.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    cores = os.cpu_count()
    line = re.search(
        r"balance-lab: 1 other training\(s\) on this machine \[the-other-run \(pid \d+\)\]: "
        r"using (\d+) of (\d+) cores \(threads=\d+; set threads= to choose\)",
        result.stderr,
    )
    assert line, result.stderr[-3000:]
    assert int(line.group(1)) == max(1, int(line.group(2)) // 2) and int(line.group(2)) <= cores
    assert sorted(p.name for p in registry.iterdir()) == [str(other.pid)]  # its own entry gone, the stale one too


def test_pinned_trainings_keep_their_threads_and_the_sharing_ones_split_the_rest(tmp_path, monkeypatch):
    """A sweep's jobs (threads from --jobs) register too: a run started beside them takes what they
    leave, not half the machine on top of them (2 cores, two 1-thread jobs: 1 thread, not 2)."""
    import torch

    from balance_lab.training.core_share import REGISTRY_ENV, CoreShare

    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path))
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(3)]
    said = []
    threads_before = torch.get_num_threads()
    try:
        register(tmp_path, sleepers[0], "job-a", threads=4)
        register(tmp_path, sleepers[1], "job-b", threads=4)
        share = CoreShare("mine", cores=16, say=said.append)
        share.setup(None, None, "fit")
        assert share.threads == 8 and torch.get_num_threads() == 8  # 16 - 4 - 4, alone among the sharing
        assert "job-a (pid" in said[0] and "4 thread(s)" in said[0] and "using 8 of 16 cores" in said[0]
        register(tmp_path, sleepers[2], "another-run")  # a second sharing run
        share.share()
        assert share.threads == 4 and "using 4 of 16 cores" in said[-1]
        register(tmp_path, sleepers[2], "another-run", threads=15)  # pinned past the machine: 1 thread, never 0
        share.share()
        assert share.threads == 1
        pinned = CoreShare("a-job", cores=16, pinned=2)
        pinned.setup(None, None, "fit")  # registers with its threads, never changes them
        assert pinned.threads is None and json.loads(pinned.entry.read_text())["threads"] == 2
        pinned.teardown(None, None, "fit")
        assert not pinned.entry.exists()
    finally:
        torch.set_num_threads(threads_before)
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
