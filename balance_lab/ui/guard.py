"""A watchdog that ties the MLflow server's life to the `balance-lab ui` process that started it.

`balance-lab ui` starts `python -m balance_lab.ui.guard PID -- mlflow server ...` in a new
session: the guard leads the server's process group and starts the server inside it. Ctrl-C or
SIGTERM to balance-lab stops the whole group as before. If balance-lab itself dies without a word
(`kill -9`, the OOM killer), nothing would stop the server and its ~10 workers (uvicorn, MLflow's
job runner, huey consumers), which keep the port: the guard sees its parent change (it is
re-parented to init or a subreaper) and stops the group: SIGTERM, then SIGKILL after a grace time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from balance_lab.ui.port_owner import group_members

POLL_SECONDS = 0.25
GRACE_SECONDS = 10.0


def stop_group(grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to this process's group (the guard ignores it), SIGKILL to what is left after `grace`."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    group = os.getpgrp()
    os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _others_in_group(group):
        time.sleep(0.1)
    os.killpg(group, signal.SIGKILL)  # the guard goes too: it has nothing left to guard


def _others_in_group(group: int) -> bool:
    """Whether a process other than this one is still in `group` (without /proc: assume so, wait the grace)."""
    return not os.path.isdir("/proc") or bool(set(group_members(group)) - {os.getpid()})


def guard(parent_pid: int, command: list[str]) -> int:
    """Run `command`; stop its whole process group as soon as `parent_pid` is no longer our parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # balance-lab decides when to stop (it SIGTERMs the group)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # wait for the server to end, then exit with it
    server = subprocess.Popen(command)
    while server.poll() is None:
        if os.getppid() != parent_pid:
            stop_group()
        time.sleep(POLL_SECONDS)
    return server.returncode


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m balance_lab.ui.guard PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    return guard(int(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
