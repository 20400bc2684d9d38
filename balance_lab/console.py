"""The rich console of every command's output."""

from __future__ import annotations

PIPE_WIDTH = 200  # columns when writing to a pipe or a file, where nothing wraps


def console(stderr: bool = False):
    """A rich Console: the terminal's width in a terminal; wide enough for the report tables in a pipe
    (rich's default of 80 columns would cut run names and wrap every table)."""
    from rich.console import Console

    screen = Console(stderr=stderr)
    return screen if screen.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)
