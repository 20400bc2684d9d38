"""Where the session's shared things live: a folder every xdist worker sees."""

from __future__ import annotations

import os
from pathlib import Path


def session_root(tmp_path_factory) -> Path:
    """The folder every xdist worker's temporary folders share (the session's own without xdist)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def corpus_build_log(tmp_path_factory) -> Path:
    """What building the session's corpus cache printed (empty when an earlier session had built it)."""
    return session_root(tmp_path_factory) / "corpus-cache.built"
