"""A checkpoint that cannot be written (no space left, a quota) stops the run with one line, keeps the
previous checkpoint and no partial file, and `--resume` continues once there is space again."""

import errno
import os
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from balance_lab.training.checkpointing import read_checkpoint_meta
from tests.helpers.runners import cli_in_new_process, run_in_this_process
from tests.helpers.short import SMALL, short_run
from tests.helpers.stores import all_runs

EVERY_2 = [*SMALL, *short_run(steps=6, val_every=6), "checkpoint.every_n_steps=2", "trainer.enable_progress_bar=false"]


def check_stopped_at_step_4(store, folder, stderr: str):
    (run,) = all_runs(store)
    reason = run.data.tags["balance_lab.status_reason"]
    assert run.info.status == "FAILED"
    assert "disk full while saving the checkpoint at step 4" in reason and "the checkpoint of step 2 is kept" in reason
    assert "Traceback" not in stderr and "disk full while saving the checkpoint at step 4" in stderr
    assert sorted(os.listdir(folder)) == ["last.ckpt"]  # no .last.ckpt.partial holding space
    assert read_checkpoint_meta(folder / "last.ckpt")["global_step"] == 2
    return run


def test_an_injected_enospc_keeps_the_previous_checkpoint_and_no_partial_file(store, tmp_path, monkeypatch):
    import torch

    from balance_lab.training import checkpoint_io

    saves, real_save = [], torch.save

    def save_until_full(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # the step-4 checkpoint: half written, then the disk is full
            f.write(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_io.torch, "save", save_until_full)
    folder = tmp_path / "ckpt"
    result = run_in_this_process(*EVERY_2, f"checkpoint.dir={folder}")
    assert result.returncode == 1, result.stderr[-3000:]
    check_stopped_at_step_4(store, folder, result.stderr)


@pytest.mark.slow
def test_a_genuinely_full_filesystem_stops_the_run_in_one_line_and_resume_continues_once_space_is_back(store, tmp_path):
    """A real tmpfs sized for one checkpoint and a half (root may mount one; elsewhere the injected
    test above covers the logic), a real training process, then --resume after the tmpfs grows."""
    sized = tmp_path / "sized"
    result = run_in_this_process(
        *SMALL,
        *short_run(steps=2, val_every=2),
        "checkpoint.every_n_steps=2",
        "checkpoint.keep_when_finished=true",
        f"checkpoint.dir={sized}",
        "logger.experiment_name=sizing",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    size = (sized / "last.ckpt").stat().st_size
    MlflowClient(store).delete_experiment(MlflowClient(store).get_experiment_by_name("sizing").experiment_id)
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size + size // 2}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}); the injected ENOSPC "
            "test covers the same code"
        )
    try:
        failed = cli_in_new_process("run", *EVERY_2, f"checkpoint.dir={folder}")
        assert failed.returncode == 1, failed.stderr[-3000:]
        run = check_stopped_at_step_4(store, folder, failed.stderr)
        grown = subprocess.run(["mount", "-o", f"remount,size={size * 4}", str(folder)], capture_output=True, text=True)
        assert grown.returncode == 0, grown.stderr
        resumed = cli_in_new_process("run", "--resume", run.info.run_id)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        continued = MlflowClient(store).get_run(run.info.run_id)
        assert continued.info.status == "FINISHED"
        steps = [m.step for m in MlflowClient(store).get_metric_history(run.info.run_id, "train/loss")]
        assert max(steps) >= 5 and len(steps) == len(set(steps)), steps
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)
