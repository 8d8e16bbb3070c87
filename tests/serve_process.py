"""`spoolup serve` as a real child process on 127.0.0.1, for tests that measure or kill it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from benchmarks.serving import free_port


@dataclass
class ServeProcess:
    """One running ``spoolup serve``; its log, temp folder and storage are kept for asserts."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    tmpdir: Path

    @property
    def rss(self) -> int:
        """The server's resident memory now, in bytes."""
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def log_text(self) -> str:
        """Everything the server wrote so far."""
        return self.log.read_text(errors="replace")

    def kill9(self) -> None:
        """``kill -9`` the server and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Return once ``/healthz`` answers at all; fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"spoolup serve exited with {process.returncode}"
            raise RuntimeError(msg)
        try:
            httpx.get(f"{url}/healthz", timeout=2)
        except httpx.TransportError:
            time.sleep(0.05)
        else:
            return
    msg = "spoolup serve did not start"
    raise RuntimeError(msg)


@contextmanager
def serve(
    folder: Path,
    *args: str,
    storage: str | None = None,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Iterator[ServeProcess]:
    """Run ``spoolup serve --storage <folder>/data *args``; stopped when the block ends.

    Its TMPDIR is ``<folder>/tmp`` and its log ``<folder>/serve-<port>.log``.
    """
    port = port or free_port()
    tmpdir = folder / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    log = folder / f"serve-{port}.log"
    command: Sequence[str] = [
        sys.executable,
        "-m",
        "spoolup.cli",
        "serve",
        "--port",
        str(port),
        "--storage",
        storage or str(folder / "data"),
        *args,
    ]
    full_env = {**os.environ, "TMPDIR": str(tmpdir), **(env or {})}
    with log.open("ab") as log_file:
        process = subprocess.Popen(command, env=full_env, stdout=log_file, stderr=log_file)
    running = ServeProcess(f"http://127.0.0.1:{port}", process, log, tmpdir)
    try:
        wait_until_up(running.url, process)
        yield running
    finally:
        running.stop()
