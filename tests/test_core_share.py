"""Trainings started separately on one machine share its cores (training/core_share.py)."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers.runners import BALANCE_LAB
from tests.helpers.short import SMALL, short_run


@pytest.mark.slow
def test_a_run_started_beside_another_training_takes_its_share_of_the_cores_and_says_so(store, tmp_path):
    from balance_lab.store.liveness import stat_fields

    registry = tmp_path / "trainings"
    registry.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a training already running
    try:
        (registry / str(other.pid)).write_text(
            json.dumps({"pid": other.pid, "start": stat_fields(other.pid)[19], "run": "the-other-run"})
        )
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
