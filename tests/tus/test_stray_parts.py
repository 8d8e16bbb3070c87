"""A part still on the wire from a frozen lease holder must not replace the new holder's.

The first server is "frozen" with part 1 on the wire: its lease renewals fail and the
UploadPart is held back. A second server takes the lapsed lease over and writes on; then
the held part lands. Part numbers the old holder could use are skipped by the new one
(on AWS S3 a late part replaces the one of its number), and the completed file holds
the right bytes (SeaweedFS on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from spoolup.storage import PartInfo, StorageError
from spoolup.storage.s3 import S3Storage
from spoolup.tus import create_tus_app
from spoolup.tus.lock import Lease, UploadLock, lock_for
from spoolup.tus.store import TusStore
from tests.seaweed import Seaweed
from tests.tus.conftest import Completed, Server

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
PART = 8 * MiB
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def prefix(seaweed: Seaweed) -> Iterator[str]:
    name = f"stray-{uuid.uuid4().hex[:12]}"
    yield name
    client = seaweed.client()
    listing = client.list_objects_v2(Bucket=seaweed.bucket, Prefix=name)
    for entry in listing.get("Contents", []):
        client.delete_object(Bucket=seaweed.bucket, Key=entry["Key"])


class _FrozenS3(S3Storage):
    """Holds every UploadPart back (already "on the wire") until ``thaw`` is set."""

    def __init__(self, seaweed: Seaweed, prefix: str) -> None:
        super().__init__(seaweed.bucket, prefix, client=seaweed.client())
        self.on_wire = threading.Event()
        self.thaw = threading.Event()
        self.numbers: list[int] = []

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> PartInfo:
        self.numbers.append(number)
        self.on_wire.set()
        assert self.thaw.wait(60)
        return super().upload_part(key, upload_id, number, data)


class _FrozenLock(UploadLock):
    """The store's lock, whose renewals fail while ``frozen`` (as if the process slept)."""

    def __init__(self, inner: UploadLock) -> None:
        super().__init__(inner.ttl)
        self.inner = inner
        self.frozen = threading.Event()

    def acquire(self, upload_id: str, owner: str) -> Lease | None:
        return self.inner.acquire(upload_id, owner)

    def renew(self, lease: Lease) -> Lease:
        if self.frozen.is_set():
            msg = "frozen"
            raise StorageError(msg)
        return self.inner.renew(lease)

    def release(self, lease: Lease) -> None:
        self.inner.release(lease)

    def discard(self, upload_id: str) -> None:
        self.inner.discard(upload_id)


def _patch(url: str, offset: int, data: bytes) -> httpx.Response:
    headers = {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }
    return httpx.patch(url, content=data, headers=headers, timeout=60)


def test_a_late_part_of_a_frozen_holder_replaces_nothing(seaweed: Seaweed, prefix: str) -> None:
    stale, fresh, rest = b"A" * PART, b"B" * PART, b"C" * (PART + 3 * MiB)
    completed = Completed()
    frozen_storage = _FrozenS3(seaweed, prefix)
    frozen_lock = _FrozenLock(lock_for(TusStore(frozen_storage), ttl=1.0))
    first = Server(create_tus_app(frozen_storage, lock=frozen_lock, lease=1.0, sweep_interval=None))
    second_storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    second = Server(
        create_tus_app(second_storage, on_complete=completed, lease=1.0, sweep_interval=None)
    )
    answers: list[httpx.Response] = []
    stalled: threading.Thread | None = None
    try:
        length = len(fresh) + len(rest)
        r = httpx.post(first.url, headers={**TUS, "Upload-Length": str(length)}, timeout=30)
        assert r.status_code == 201, r.text
        path = httpx.URL(r.headers["location"]).path.rsplit("/", 1)[1]
        frozen_lock.frozen.set()
        stalled = threading.Thread(
            target=lambda: answers.append(_patch(first.url + path, 0, stale)), daemon=True
        )
        stalled.start()
        assert frozen_storage.on_wire.wait(60)
        # The first server's lease lapses; the second takes the upload over.
        deadline = time.monotonic() + 60
        while (r := _patch(second.url + path, 0, fresh)).status_code == 423:
            assert time.monotonic() < deadline, "the lapsed lease was never taken over"
            time.sleep(0.2)
        assert r.status_code == 204, r.text
        # SeaweedFS keeps both uploads of a part number and completes by ETag; AWS S3
        # replaces: the numbers themselves must not meet.
        info = TusStore(second_storage).load(path)
        assert info is not None
        written = {int(p[0]) for p in info.backend["parts"]}
        assert written
        assert not written & set(frozen_storage.numbers)
        # Now the frozen server's part lands, after the second server wrote its own.
        frozen_lock.frozen.clear()
        frozen_storage.thaw.set()
        stalled.join(60)
        assert [a.status_code for a in answers] == [423]
        r = _patch(second.url + path, len(fresh), rest)
        assert r.status_code == 204, r.text
    finally:
        frozen_storage.thaw.set()
        if stalled is not None:
            stalled.join(60)
        first.stop()
        second.stop()
    (call,) = completed.calls
    assert call["sha256"] == hashlib.sha256(fresh + rest).hexdigest()
