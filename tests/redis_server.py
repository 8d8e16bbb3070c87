"""A real Redis for the tests: Debian's ``redis-server`` on a free port of 127.0.0.1.

``make cluster-tools`` installs it (as root); without it the tests that need it skip,
saying so. The server keeps nothing on disk and is stopped by its PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.seaweed import free_ports


class RedisServer:
    """A running ``redis-server``; ``url`` is its ``redis://`` URL."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (make cluster-tools installs Debian's)")
        (port,) = free_ports(1)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = folder / "redis.out"
        command = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                msg = f"redis-server did not start:\n{self.log.read_text(errors='replace')}"
                raise RuntimeError(msg)
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the server, then kill it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session (skips when ``redis-server`` is missing)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
