"""Server processes for the end-to-end benchmarks: start, watch through ``/proc``, stop.

A server under test is a child process (uvicorn, or gunicorn with its worker) on a free
port of 127.0.0.1. What a benchmark reads of it comes from ``/proc``: disk bytes
written (``write_bytes`` of ``/proc/<pid>/io``, which counts the page-cache writes a
process makes even for a temp file deleted before writeback), CPU seconds (user +
system, finished threads included) and peak RSS (``VmHWM``), summed or maxed over the
server's process tree so that a pre-fork server's worker counts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

__all__ = [
    "cpu_seconds",
    "empty_folders",
    "free_port",
    "peak_rss",
    "proc_io",
    "process_tree",
    "stop",
    "uvicorn_command",
    "wait_for_port",
    "write_bytes",
]


def uvicorn_command(factory: str, port: int) -> list[str]:
    """uvicorn serving the app made by ``factory`` (``module:function``) on 127.0.0.1.

    One worker, ``--http httptools``, no access log: the same server for every app.
    """
    return [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--http",
        "httptools",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def empty_folders(*folders: Path) -> tuple[Path, ...]:
    """Each folder, made empty (removed first if it exists); the same paths."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    return folders


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until ``process`` accepts connections on ``port``; raise if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (a pre-fork server's workers)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [pid, *(child.pid for child in children)]


def proc_io(pid: int) -> dict[str, int]:
    """The counters of ``/proc/<pid>/io``."""
    text = Path(f"/proc/{pid}/io").read_text()
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def write_bytes(pids: list[int]) -> int:
    """Bytes the processes wrote to storage (page-cache writes count), summed."""
    return sum(proc_io(pid)["write_bytes"] for pid in pids)


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of the processes, their finished threads included, summed."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> int:
    """The peak resident set size (``VmHWM``) of one process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate ``process`` (a server stops its workers on SIGTERM); kill it if it lingers."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
