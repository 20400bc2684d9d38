"""A folder of token files built once and then reused: the built-in BPE corpus and `data=hf` corpora.

Concurrent runs (a sweep's jobs) wait on a file lock while the first one builds it; the folder
appears whole (written under a temporary name, then renamed) or not at all, so no run ever reads
half a corpus and a failed build leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

READY = "meta.json"  # written last: its presence means the folder is complete


def ensure_built(out: Path, build: Callable[[Path], None]) -> Path:
    """`out`, calling build(tmp_folder) first if it does not exist yet (under a lock)."""
    import fcntl

    if (out / READY).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / READY).is_file():  # another process built it while we waited
            return out
        build_whole(out, build)
    return out


def build_whole(out: Path, build: Callable[[Path], None]) -> None:
    """build(tmp) then rename tmp to `out` (replacing an older `out`); on any error remove tmp."""
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
