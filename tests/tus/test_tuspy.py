"""tuspy, a maintained tus client, against the server: whole, checksummed, resumed."""

from __future__ import annotations

import hashlib
import io

import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from tests.tus.conftest import Env, Server

DATA = bytes(range(256)) * 4096  # 1 MiB


def test_tuspy_uploads_in_chunks_with_checksums(env: Env, server: Server) -> None:
    c = tus_client.TusClient(server.url)
    up = c.uploader(
        file_stream=io.BytesIO(DATA),
        chunk_size=300_000,
        metadata={"filename": "big.bin", "filetype": "application/octet-stream"},
        upload_checksum=True,
    )
    up.upload()
    (call,) = env.completed.calls
    assert call["data"] == DATA
    assert call["filename"] == "big.bin"
    assert call["sha256"] == hashlib.sha256(DATA).hexdigest()


def test_tuspy_resumes_after_interruption_and_restart(env: Env) -> None:
    first = env.start()
    up = tus_client.TusClient(first.url).uploader(
        file_stream=io.BytesIO(DATA), chunk_size=200_000, metadata={"filename": "r.bin"}
    )
    up.upload_chunk()  # type: ignore[no-untyped-call]
    up.upload_chunk()  # type: ignore[no-untyped-call]
    assert up.offset == 400_000
    url: str = str(up.url)
    assert url.startswith(first.url)
    first.stop()
    with pytest.raises(TusCommunicationError):
        up.upload_chunk()  # type: ignore[no-untyped-call]
    second = env.start()
    # A new client, as after a crash: it finds the offset with HEAD and goes on from there.
    url = url.replace(first.base, second.base)
    again = tus_client.TusClient(second.url).uploader(
        file_stream=io.BytesIO(DATA), chunk_size=200_000, url=url
    )
    assert again.offset == 400_000
    again.upload()
    (call,) = env.completed.calls
    assert call["data"] == DATA
    assert call["filename"] == "r.bin"
