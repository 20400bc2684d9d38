"""Processes as Linux /proc shows them: who listens on a TCP port, who is in a process group.

Used to turn "port in use" into "port held by a leftover MLflow server, stop it with ...", and by
the server guard to wait for the group it stops. Elsewhere (no /proc) every answer is empty.
"""

from __future__ import annotations

import os

_LISTEN = "0A"  # TCP state code in /proc/net/tcp


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def listening_pids(port: int) -> list[int]:
    """Pids holding a socket that listens on `port` (only those this user may inspect)."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not sockets:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in sockets for fd in fds):
                pids.append(int(entry))
        except OSError:  # gone, or not ours to look at
            continue
    return sorted(pids)


def process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def command_line(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def group_members(group: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group `group`."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # state is field 3, pgrp field 5
            members.append(int(entry))
    return members
