"""Which process wrote a temp file, and whether that process is still alive.

A temp name carries its writer: ``<machine>-<pid>-<start>``, where ``machine`` is a
short digest of the host name, the boot id and the PID namespace (so that two
containers or two hosts sharing a folder never take each other's process ids for
their own) and ``start`` is the process's start time (so that a reused pid is not
mistaken for the writer). A cleanup removes the temp files of a writer known to be
dead whatever their age, leaves those of a live writer alone, and falls back to age
for writers it cannot check (another machine).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

__all__ = ["is_dead", "owner_of", "this_process"]

_OWNER = re.compile(r"([0-9a-f]{10})-([0-9]{1,10})-([0-9]{1,20})")
_cache: dict[int, str] = {}


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _machine() -> str:
    try:
        pid_namespace = str(Path("/proc/self/ns/pid").stat().st_ino)
    except OSError:
        pid_namespace = ""
    seed = "|".join((socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"), pid_namespace))
    return hashlib.sha256(seed.encode()).hexdigest()[:10]


def _start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot, ``None`` if it is not running.

    Without ``/proc`` (not Linux), ``0`` for any live process: the pid alone is checked.
    """
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        # Field 22, counted after the command name, which may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        return fields[19] if len(fields) > 19 else None
    if Path("/proc/self/stat").exists():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "0"
    return "0"


def this_process() -> str:
    """This process's owner tag, as temp names carry it."""
    pid = os.getpid()
    if pid not in _cache:  # computed again in a forked child
        _cache[pid] = f"{_machine()}-{pid}-{_start_time(pid) or 0}"
    return _cache[pid]


def owner_of(tag: str) -> tuple[str, int, str] | None:
    """``(machine, pid, start)`` of an owner tag, or ``None`` if it is not one."""
    match = _OWNER.fullmatch(tag)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(3)


def is_dead(tag: str) -> bool | None:
    """Whether the writer ``tag`` names is gone: ``True``, ``False``, or ``None`` (unknown)."""
    owner = owner_of(tag)
    if owner is None:
        return None
    machine, pid, start = owner
    if machine != this_process().split("-", 1)[0]:
        return None
    running = _start_time(pid)
    return running is None or (start not in {running, "0"} and running != "0")
