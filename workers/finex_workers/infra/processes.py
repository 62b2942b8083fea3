"""Whether a process on this host still runs: the stuck-job sweep and the local runners ask."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def pid_namespace() -> str:
    """The processes pid_alive can see: this host and this PID namespace (its inode).

    A hostname alone does not say it: a debug container (kubectl debug) shares its pod's
    hostname but not its PIDs, and would take every worker of the pod for dead. Workers record
    this in their key (``finex_pidns``), and the sweep asks pid_alive only when it matches.
    """
    try:
        inode = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        inode = 0
    return f"{socket.gethostname()}/pidns:{inode}"


def pid_alive(pid: int) -> bool:
    """True if pid runs on this host; a zombie (killed, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
