"""Part buffers of uploads to a server on S3 storage (SeaweedFS), over real sockets.

Whatever ends an upload in the middle of a part (the client leaving, a file over the
size limit, the store refusing a part, for POST, PUT and tus PATCH), every part buffer
it held goes back to the process's pool at once (no garbage collection awaited), and
no multipart upload is left open for a plain upload. The part budget governs tus
uploads too: with nothing to lend, their parts are sent one at a time.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from spoolup._io import PART_BUDGET
from spoolup._part_buffers import PROCESS_BUFFERS
from spoolup.limits import Limits
from spoolup.server.store import RecordStore, open_store
from spoolup.storage import StorageError
from spoolup.storage.s3 import S3Storage
from tests.seaweed import Seaweed
from tests.server.conftest import RunningServer

pytestmark = [pytest.mark.s3, pytest.mark.slow]

MiB = 1024 * 1024
PART = 8 * MiB
TUS = {"Tus-Resumable": "1.0.0"}


def _held() -> int:
    """Bytes of part buffers alive in this process and not kept idle for reuse."""
    return PROCESS_BUFFERS.live - PROCESS_BUFFERS._kept_bytes


@pytest.fixture(scope="module")
def s3_env(seaweed: Seaweed) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in seaweed.env().items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def s3_store(s3_env: None, seaweed: Seaweed) -> RecordStore:
    return open_store(f"s3://{seaweed.bucket}/fail-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def s3_server(s3_store: RecordStore, make_server: Callable[..., RunningServer]) -> RunningServer:
    storage = s3_store.storage
    assert isinstance(storage, S3Storage)
    return make_server(
        {"store": s3_store},
        storage=f"s3://{storage.bucket}/{storage.prefix}",
        limits=Limits(max_file_size=3 * PART),
    )


def _open_uploads(seaweed: Seaweed, server: RunningServer) -> list[str]:
    """The multipart uploads open under the server's prefix (tus uploads hold theirs)."""
    prefix = server.config.storage.removeprefix(f"s3://{seaweed.bucket}/")
    listed = seaweed.client().list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix)
    return sorted(u["UploadId"] for u in listed.get("Uploads", []))


def _settled(before: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while _held() != before:
        assert time.monotonic() < deadline, f"{what}: {(_held() - before) / MiB} MiB still held"
        time.sleep(0.02)


def _send_and_leave(server: RunningServer, head: bytes, sent: int) -> None:
    """Send ``head`` and ``sent`` bytes of body, then close the connection mid-part."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        chunk = b"x" * MiB
        for _ in range(sent // MiB):
            sock.sendall(chunk)
        # Until the server has taken the bytes into parts (the body is larger).
        deadline = time.monotonic() + 60
        while _held() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)


def _put_head(length: int) -> bytes:
    return (
        f"PUT /api/files/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _tus_upload(client: httpx.Client, body: bytes) -> httpx.Response:
    """Create a tus upload of ``body`` and send it in one PATCH; the PATCH's answer."""
    created = client.post("/tus/", headers={**TUS, "Upload-Length": str(len(body))})
    return client.patch(
        created.headers["location"],
        content=body,
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )


def _tus_head(client: httpx.Client, length: int) -> bytes:
    created = client.post("/tus/", headers={**TUS, "Upload-Length": str(length)})
    assert created.status_code == 201, created.text
    return (
        f"PATCH {httpx.URL(created.headers['location']).path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("way", ["put", "tus"])
def test_a_client_leaving_mid_part_gives_its_buffers_back(
    s3_server: RunningServer, seaweed: Seaweed, way: str
) -> None:
    before, uploads = _held(), _open_uploads(seaweed, s3_server)
    with s3_server.client() as client:
        head = _put_head(3 * PART) if way == "put" else _tus_head(client, 3 * PART)
    _send_and_leave(s3_server, head, 2 * PART + 2 * MiB)
    _settled(before, "the client left")
    if way == "put":
        assert _open_uploads(seaweed, s3_server) == uploads


def test_a_file_over_the_limit_gives_its_buffers_back(
    s3_server: RunningServer, seaweed: Seaweed
) -> None:
    before, uploads = _held(), _open_uploads(seaweed, s3_server)
    with s3_server.client() as client:
        answer = client.post("/api/files", files={"f": ("big.bin", b"x" * (3 * PART + 1))})
    assert answer.status_code == 413, answer.text
    _settled(before, "the file was too large")
    assert _open_uploads(seaweed, s3_server) == uploads


@pytest.mark.parametrize("way", ["post", "put", "tus"])
def test_a_part_the_store_refuses_gives_the_buffers_back(
    s3_server: RunningServer,
    s3_store: RecordStore,
    seaweed: Seaweed,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
) -> None:
    storage = s3_store.storage
    assert isinstance(storage, S3Storage)
    real = storage.upload_part

    def refuse_the_second(key: str, upload_id: str, number: int, data: Any) -> Any:
        if number == 2:
            raise StorageError("S3 uploading part 2 failed: InternalError (injected)")
        return real(key, upload_id, number, data)

    monkeypatch.setattr(storage, "upload_part", refuse_the_second)
    before, uploads = _held(), _open_uploads(seaweed, s3_server)
    body = b"y" * (2 * PART + MiB)
    with s3_server.client() as client:
        if way == "post":
            answer = client.post("/api/files", files={"f": ("big.bin", body)})
        elif way == "put":
            answer = client.put("/api/files/big.bin", content=body)
        else:
            answer = _tus_upload(client, body)
    assert answer.status_code >= 500, answer.text
    _settled(before, "the store refused a part")
    if way != "tus":
        assert _open_uploads(seaweed, s3_server) == uploads


@pytest.mark.parametrize(("budget", "in_background"), [(0, False), (PART_BUDGET, True)])
def test_tus_sends_parts_in_the_background_only_under_the_budget(
    s3_server: RunningServer,
    s3_store: RecordStore,
    monkeypatch: pytest.MonkeyPatch,
    budget: int,
    in_background: bool,
) -> None:
    storage = s3_store.storage
    assert isinstance(storage, S3Storage)
    real = storage.upload_part
    threads: list[str] = []

    def watch(key: str, upload_id: str, number: int, data: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(key, upload_id, number, data)

    monkeypatch.setattr(storage, "upload_part", watch)
    PROCESS_BUFFERS.set_budget(budget)
    try:
        body = os.urandom(3 * PART)  # the limit here
        with s3_server.client() as client:
            answer = _tus_upload(client, body)
            assert answer.status_code == 204, answer.text
    finally:
        PROCESS_BUFFERS.set_budget(PART_BUDGET)
    # Three parts; the pool's threads send the ones sent in the background.
    assert len(threads) >= 3
    assert any(name.startswith("spoolup-io") for name in threads) is in_background
