"""Slow and stalled uploads against a real ``spoolup serve`` on SeaweedFS (S3 storage).

Each client sends its request's head and a little of a large body, then stops sending,
as a slowloris holding the server's part buffers would. Checked over real sockets: the
server's memory grows with what the clients sent, not by a whole part per client;
another upload still goes through meanwhile; and once the clients leave, every buffer
goes back (``spoolup_part_buffer_bytes`` down to the few kept for reuse), with no
descriptor and no temp file left behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.seaweed import Seaweed
from tests.serve_process import ServeProcess, serve

pytestmark = [pytest.mark.s3, pytest.mark.slow]

MiB = 1024 * 1024
PART = 8 * MiB  # the server's S3 part size
CLIENTS = 12
# Enough to reach the storage writer past every batch on the way (at most 1 MiB).
SENT = 3 * MiB // 2
DECLARED = 64 * MiB
TUS = {"Tus-Resumable": "1.0.0"}


def _metric(server: ServeProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no {name} in /metrics")


def _files(server: ServeProcess) -> list[str]:
    """What the server's descriptors open, but sockets (pooled connections to S3 come
    and go); see :func:`_clients` for those."""
    folder = f"/proc/{server.process.pid}/fd"
    found = []
    for name in os.listdir(folder):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            found.append(os.readlink(f"{folder}/{name}"))
    return sorted(f for f in found if not f.startswith("socket:"))


def _clients(server: ServeProcess) -> int:
    """Connections of clients the server holds (on its own port, but the listener)."""
    port = int(server.url.rsplit(":", 1)[1])
    held = psutil.Process(server.process.pid).net_connections("tcp")
    return sum(1 for c in held if c.laddr and c.laddr.port == port and c.raddr)


def _wait_for(check: object, what: str) -> None:
    """Poll ``check()`` until true; a generous deadline that only a hang reaches."""
    deadline = time.monotonic() + 60
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _head(way: str, server: ServeProcess, number: int) -> bytes:
    """The request head and body start of one stalled upload of ``way``."""
    if way == "put":
        return (
            f"PUT /api/files/slow{number}.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {DECLARED}\r\n\r\n"
        ).encode()
    if way == "post":
        part = (
            f'--b\r\nContent-Disposition: form-data; name="f"; filename="slow{number}.bin"\r\n\r\n'
        ).encode()
        return (
            "POST /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {DECLARED}\r\n\r\n"
        ).encode() + part
    created = httpx.post(
        f"{server.url}/tus/", headers={**TUS, "Upload-Length": str(DECLARED)}, timeout=30
    )
    assert created.status_code == 201, created.text
    path = httpx.URL(created.headers["location"]).path
    return (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {DECLARED}\r\n\r\n"
    ).encode()


@pytest.fixture
def s3_server(seaweed: Seaweed, tmp_path: Path) -> Iterator[ServeProcess]:
    prefix = f"slow-{uuid.uuid4().hex[:8]}"
    with serve(tmp_path, storage=f"s3://{seaweed.bucket}/{prefix}", env=seaweed.env()) as server:
        yield server


@pytest.mark.parametrize("way", ["put", "post", "tus"])
def test_stalled_uploads_hold_what_they_sent_not_a_part_each(
    s3_server: ServeProcess, way: str
) -> None:
    server = s3_server
    with httpx.Client(base_url=server.url, timeout=120) as client:
        # Warm up every path (imports, the S3 client) before the baseline.
        assert client.put("/api/files/warm.txt", content=b"w" * 1000).status_code == 201
        assert client.post("/api/files", files={"f": ("w.txt", b"w")}).status_code == 201
        before_rss = server.rss
        before_files = _files(server)
        stalled: list[socket.socket] = []
        try:
            for number in range(CLIENTS):
                head = _head(way, server, number)
                sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
                stalled.append(sock)
                sock.sendall(head + b"s" * SENT)
            # Every stalled upload reached its storage writer, which took its own part.
            _wait_for(
                lambda: _metric(server, "spoolup_part_buffer_bytes") >= CLIENTS * PART,
                "the stalled uploads never reached their part buffers",
            )
            grown = max(server.rss for _ in range(5)) - before_rss
            # Another upload, of more than a part, goes through meanwhile.
            other = os.urandom(PART + MiB)
            stored = client.put("/api/files/other.bin", content=other)
            assert stored.status_code == 201, stored.text
            assert client.get(f"/api/files/{stored.json()['id']}").content == other
        finally:
            for sock in stalled:
                sock.close()
        # A whole part per client would be 8 MiB each; what they sent is 1.5 MiB.
        assert grown < CLIENTS * (SENT + 2 * MiB), f"{grown / CLIENTS / MiB:.1f} MiB per client"
        idle = _metric(server, "spoolup_part_buffer_budget_bytes") // 4
        _wait_for(
            lambda: _metric(server, "spoolup_part_buffer_bytes") <= idle,
            "part buffers of the stalled uploads were not given back",
        )
        client.close()
        _wait_for(lambda: _clients(server) == 0, "client connections left open")
        _wait_for(lambda: _files(server) == before_files, "files left open")
    assert list(server.tmpdir.iterdir()) == []
