"""Processes for the cluster tests: ``spoolup serve`` on S3, and a raw tus PATCH.

Every process is started on a free port of 127.0.0.1 and stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.seaweed import Seaweed, free_ports

TUS = {"Tus-Resumable": "1.0.0"}


class SpoolupServer:
    """One ``spoolup serve --storage s3://bucket/prefix`` process (restartable)."""

    def __init__(self, folder: Path, store: Seaweed, prefix: str, *extra: str) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage = f"s3://{store.bucket}/{prefix}"
        self.env = {**os.environ, **store.env(), "TMPDIR": str(self.folder)}
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait: bool = True) -> SpoolupServer:
        """Start the process (again) on the same port; wait until ``/healthz`` answers."""
        self.starts += 1
        command = [sys.executable, "-m", "spoolup.cli", "serve", "--port", str(self.port)]
        command += ["--storage", self.storage, "--no-access-log", *self.extra]
        with (self.folder / f"serve-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        if wait:
            self.wait_up()
        return self

    def wait_up(self, timeout: float = 60.0) -> None:
        """Poll ``/healthz`` until it answers 200; raise with the log if the process died."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"spoolup serve exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"spoolup serve did not answer in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """The end of the latest run's output."""
        path = self.folder / f"serve-{self.starts}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process."""
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """``kill -9`` and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        """Resume if stopped, terminate, kill if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


class RawPatch:
    """A PATCH sent by hand, so the test decides when each byte leaves."""

    def __init__(self, url: str, offset: int, length: int) -> None:
        base, _, path = url.removeprefix("http://").partition("/")
        host, _, port = base.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.sock.sendall(
            f"PATCH /{path} HTTP/1.1\r\nHost: {base}\r\nTus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: {offset}\r\nContent-Length: {length}\r\n\r\n".encode()
        )

    def send(self, data: bytes) -> bool:
        """Send ``data``; ``False`` if the server already closed the connection."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def status(self) -> int | None:
        """The response's status code, or ``None`` if the server closed without one."""
        try:
            head = self.sock.recv(4096)
        except OSError:
            return None
        finally:
            self.sock.close()
        if not head.startswith(b"HTTP/1.1 "):
            return None
        return int(head[9:12])


def head_offset(url: str) -> int:
    """The upload's offset as the server it is asked of says."""
    response = httpx.head(url, headers=TUS, timeout=30)
    assert response.status_code == 200, response
    return int(response.headers["upload-offset"])
