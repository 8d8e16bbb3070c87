"""`spoolup serve` as a child process: a PATCH killed with -9 resumes at a checkpoint, and
a large PATCH streams with bounded memory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.serve_process import ServeProcess, serve

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


def create(url: str, size: int) -> str:
    r = httpx.post(f"{url}/tus/", headers={**TUS, "Upload-Length": str(size)})
    assert r.status_code == 201, r.text
    return str(r.headers["location"])


def head_offset(url: str, path: str) -> int:
    r = httpx.head(f"{url}{path}", headers=TUS)
    assert r.status_code == 200
    return int(r.headers["upload-offset"])


def start_patch(server: ServeProcess, path: str, offset: int, length: int) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {length}\r\n\r\n".encode()
    )
    return sock


def patch_rest(url: str, path: str, offset: int, data: bytes) -> httpx.Response:
    headers = {**TUS, "Content-Type": "application/offset+octet-stream"}
    deadline = time.monotonic() + 120
    while True:  # a killed server's lease lapses after a while (423 until then)
        r = httpx.patch(
            f"{url}{path}",
            content=data[offset:],
            headers={**headers, "Upload-Offset": str(offset)},
            timeout=60,
        )
        if r.status_code != 423 or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_kill_9_mid_patch_resumes_at_a_checkpoint(tmp_path: Path) -> None:
    data = os.urandom(24 * MiB)
    storage = str(tmp_path / "data")
    args = ("--tus-checkpoint", "1MiB", "--tus-checkpoint-seconds", "3600")
    with serve(tmp_path / "a", *args, storage=storage) as first:
        path = create(first.url, len(data))
        with start_patch(first, path, 0, len(data)) as sock:
            sent = 0
            # Send 12 MiB, then wait until the server has checkpointed past 4 MiB.
            while sent < 12 * MiB:
                sock.sendall(data[sent : sent + MiB])
                sent += MiB
            deadline = time.monotonic() + 120
            while head_offset(first.url, path) < 4 * MiB:
                assert time.monotonic() < deadline, "no checkpoint was saved during the PATCH"
                time.sleep(0.05)
            first.kill9()
    with serve(tmp_path / "b", *args, storage=storage) as second:
        offset = head_offset(second.url, path)
        # At most one checkpoint (1 MiB) and the batch under way are lost.
        assert 4 * MiB <= offset <= 12 * MiB
        r = patch_rest(second.url, path, offset, data)
        assert r.status_code == 204, r.text
        record = json.loads(base64.b64decode(r.headers["spoolup-file-record"]))
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert httpx.get(f"{second.url}/api/files/{record['id']}").content == data


def peak_rss(server: ServeProcess) -> int:
    """The server's peak resident memory so far (VmHWM), in bytes."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_one_large_patch_streams_with_bounded_memory(tmp_path: Path) -> None:
    size = 256 * MiB
    block = os.urandom(MiB)
    with serve(tmp_path) as server:
        path = create(server.url, size)
        # Warm up: a small upload first, so the peak afterwards is the PATCH's own.
        small = create(server.url, MiB)
        headers = {**TUS, "Content-Type": "application/offset+octet-stream"}
        r = httpx.patch(
            f"{server.url}{small}", content=block, headers={**headers, "Upload-Offset": "0"}
        )
        assert r.status_code == 204
        before = peak_rss(server)
        digest = hashlib.sha256()
        with start_patch(server, path, 0, size) as sock:
            for _ in range(size // MiB):
                sock.sendall(block)
                digest.update(block)
            reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 204"), reply[:200]
        grown = peak_rss(server) - before
        assert grown < 64 * MiB, f"the server grew by {grown / MiB:.0f} MiB"
        marker = b"spoolup-file-record: "
        line = reply.lower().split(marker, 1)[1].split(b"\r\n", 1)[0]
        start = reply.lower().index(marker) + len(marker)
        record = json.loads(base64.b64decode(reply[start : start + len(line)]))
        assert record["sha256"] == digest.hexdigest()
