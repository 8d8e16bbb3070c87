"""tus over S3 (SeaweedFS on 127.0.0.1): two servers share one bucket and one upload."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator

import pytest
from tusclient import client as tus_client

from spoolup.storage.s3 import S3Storage
from spoolup.tus import create_tus_app
from spoolup.tus.store import TusStore
from tests.seaweed import Seaweed
from tests.tus.conftest import Completed, Server

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
DATA = bytes(range(256)) * (12 * MiB // 256)


@pytest.fixture
def prefix(seaweed: Seaweed) -> Iterator[str]:
    name = f"tus-{uuid.uuid4().hex[:12]}"
    yield name
    client = seaweed.client()
    listing = client.list_objects_v2(Bucket=seaweed.bucket, Prefix=name)
    for entry in listing.get("Contents", []):
        client.delete_object(Bucket=seaweed.bucket, Key=entry["Key"])


def s3_server(seaweed: Seaweed, prefix: str, completed: Completed) -> Server:
    storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    return Server(create_tus_app(storage, on_complete=completed, sweep_interval=None))


def test_second_server_finishes_what_the_first_began(
    seaweed: Seaweed,
    prefix: str,
) -> None:
    completed = Completed()
    first = s3_server(seaweed, prefix, completed)
    second = s3_server(seaweed, prefix, completed)
    try:
        up = tus_client.TusClient(first.url).uploader(
            file_stream=io.BytesIO(DATA), chunk_size=6 * MiB, metadata={"filename": "s3.bin"}
        )
        up.upload_chunk()  # type: ignore[no-untyped-call]
        url = str(up.url)
        first.stop()
        # 6 MiB is under one 8 MiB part but over S3's 5 MiB minimum: it is sent as a
        # part when the request ends; nothing waits in memory or in the tail object.
        store = TusStore(S3Storage(seaweed.bucket, prefix, client=seaweed.client()))
        info = store.load(url.rsplit("/", 1)[1])
        assert info is not None
        assert (info.offset, info.backend["tail"]) == (6 * MiB, 0)
        assert [p[1] for p in info.backend["parts"]] == [6 * MiB]
        again = tus_client.TusClient(second.url).uploader(
            file_stream=io.BytesIO(DATA),
            chunk_size=6 * MiB,
            url=url.replace(first.base, second.base),
        )
        assert again.offset == 6 * MiB
        again.upload()
    finally:
        second.stop()
    (call,) = completed.calls
    assert call["size"] == len(DATA)
    assert call["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert call["data"] == DATA
    assert call["filename"] == "s3.bin"


def test_bytes_short_of_a_part_wait_in_the_tail(seaweed: Seaweed, prefix: str) -> None:
    # 3 MiB PATCHes are under S3's 5 MiB minimum: they wait in the tail object between
    # requests, and a second server picks them up from there.
    data = DATA[: 17 * MiB + 5]
    completed = Completed()
    first = s3_server(seaweed, prefix, completed)
    second = s3_server(seaweed, prefix, completed)
    try:
        up = tus_client.TusClient(first.url).uploader(
            file_stream=io.BytesIO(data), chunk_size=3 * MiB
        )
        up.upload_chunk()  # type: ignore[no-untyped-call]
        url = str(up.url)
        store = TusStore(S3Storage(seaweed.bucket, prefix, client=seaweed.client()))
        info = store.load(url.rsplit("/", 1)[1])
        assert info is not None
        assert (info.offset, info.backend["tail"], info.backend["parts"]) == (3 * MiB, 3 * MiB, [])
        again = tus_client.TusClient(second.url).uploader(
            file_stream=io.BytesIO(data),
            chunk_size=3 * MiB,
            url=url.replace(first.base, second.base),
        )
        assert again.offset == 3 * MiB
        again.upload()
    finally:
        first.stop()
        second.stop()
    (call,) = completed.calls
    assert call["sha256"] == hashlib.sha256(data).hexdigest()
