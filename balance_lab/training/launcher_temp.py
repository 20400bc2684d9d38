"""A temp folder of the run's own for Lightning's multiprocessing launcher, removed after fit.

Lightning's multiprocessing launcher (`ddp_spawn`, `ddp_fork`, `ddp_notebook`) hands rank 0's final
weights to the main process through `tempfile.mkdtemp()/.temp.ckpt`, then deletes the file but not
the folder: every such run left an empty /tmp/tmpXXXXXXXX behind. Pointing the temp folder of this
process and of the ranks it starts at one folder of the run's own (a forked rank copies
`tempfile.tempdir`, a spawned one reads TMPDIR) lets the run remove it. Other launchers re-execute the
command per rank and stay as they are: their ranks outlive this process's fit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def launcher_temp_dir(trainer: Any) -> Iterator[None]:
    """Within: temp files of this process and of the ranks the launcher starts go to a folder removed after."""
    try:  # Lightning's private class: a version that moved it leaves the folder behind, nothing worse
        from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
    except ImportError:
        _MultiProcessingLauncher = ()  # isinstance(x, ()) is False

    if not isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher):
        yield
        return
    folder = tempfile.mkdtemp(prefix="balance-lab-launcher-")
    saved_env, saved_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    try:
        yield
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)
