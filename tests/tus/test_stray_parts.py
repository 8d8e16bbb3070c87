"""A part still on the wire from a frozen lease holder must not replace the new holder's.

The first server is "frozen" with part 1 on the wire: its lease renewals fail and the
UploadPart is held back. A second server takes the lapsed lease over and writes on; then
the held part lands. Part numbers the old holder could use are skipped by the new one
(on AWS S3 a late part replaces the one of its number), and the completed file holds
the right bytes (SeaweedFS on 127.0.0.1). The old holder never numbers a part past what
is skipped, even when its checkpoint's save stalls; and a part waiting to be sent in
the background after the lease was lost is not sent. A state save on the wire when
the holder froze must not land over the new holder's state either.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

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


class _Recording(S3Storage):
    """Records each UploadPart's number (``late``: those sent once ``taken`` is set).

    A ``frozen`` one holds every UploadPart back (already "on the wire") until ``thaw``.
    """

    def __init__(self, seaweed: Seaweed, prefix: str, *, frozen: bool = False) -> None:
        super().__init__(seaweed.bucket, prefix, client=seaweed.client())
        self.numbers: list[int] = []
        self.taken = threading.Event()
        self.late: list[int] = []
        self.frozen = frozen
        self.on_wire = threading.Event()
        self.thaw = threading.Event()

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> PartInfo:
        self.numbers.append(number)
        if self.taken.is_set():
            self.late.append(number)
        if self.frozen:
            self.on_wire.set()
            assert self.thaw.wait(60)
        return super().upload_part(key, upload_id, number, data)


class _StalledSaves(_Recording):
    """Holds the upload state's saves back while ``stall`` is set; they fail at ``thaw``."""

    def __init__(self, seaweed: Seaweed, prefix: str) -> None:
        super().__init__(seaweed, prefix)
        self.stall = threading.Event()
        self.stalled = threading.Event()

    def write_if(
        self, key: str, data: bytes, *, tag: str | None, durable: bool = True
    ) -> str | None:
        if self.stall.is_set() and key.endswith("/info"):
            self.stalled.set()
            assert self.thaw.wait(60)
            msg = "the save never landed"
            raise StorageError(msg)
        return super().write_if(key, data, tag=tag, durable=durable)


class _BusyPool:
    """A stand-in for the part-sending pool whose tasks wait for ``go`` (a busy pool)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(4)
        self.queued = threading.Event()
        self.go = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        def later() -> Any:
            self.queued.set()
            assert self.go.wait(60)
            return fn(*args)

        return self.pool.submit(later)


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


def _create(url: str, length: int) -> str:
    """A new upload's id."""
    r = httpx.post(url, headers={**TUS, "Upload-Length": str(length)}, timeout=30)
    assert r.status_code == 201, r.text
    return httpx.URL(r.headers["location"]).path.rsplit("/", 1)[1]


def _take_over(url: str, offset: int, data: bytes) -> None:
    """PATCH until the lapsed lease is taken over."""
    deadline = time.monotonic() + 60
    while (r := _patch(url, offset, data)).status_code == 423:
        assert time.monotonic() < deadline, "the lapsed lease was never taken over"
        time.sleep(0.2)
    assert r.status_code == 204, r.text


def test_a_late_part_of_a_frozen_holder_replaces_nothing(seaweed: Seaweed, prefix: str) -> None:
    stale, fresh, rest = b"A" * PART, b"B" * PART, b"C" * (PART + 3 * MiB)
    completed = Completed()
    frozen_storage = _Recording(seaweed, prefix, frozen=True)
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


@pytest.mark.parametrize("old_checkpoint", [1, 3 * 5 * MiB], ids=["same", "larger"])
def test_a_stalled_checkpoint_save_holds_the_part_numbers_back(
    seaweed: Seaweed, prefix: str, old_checkpoint: int
) -> None:
    # The first server's checkpoint saves stall while its lease is still renewed, as
    # its request goes on sending parts; then it freezes and the second takes over.
    # With checkpoints every byte and 5 MiB parts, a takeover skips 6 numbers past
    # the state saved last (``ahead``): the old holder must not number a part past them.
    # "larger": the old server checkpoints every 3 parts (it may use 8 numbers), the
    # new one every byte: the count is the upload's (fixed at creation), not each
    # server's own, so the two still never meet.
    part = 5 * MiB
    completed = Completed()
    old_storage = _StalledSaves(seaweed, prefix)
    old_lock = _FrozenLock(lock_for(TusStore(old_storage), ttl=1.0))
    options: dict[str, Any] = {"lease": 1.0, "sweep_interval": None, "checkpoint_bytes": 1}
    first = Server(
        create_tus_app(
            TusStore(old_storage, part_size=part),
            lock=old_lock,
            **{**options, "checkpoint_bytes": old_checkpoint},
        )
    )
    new_storage = _Recording(seaweed, prefix)
    second = Server(
        create_tus_app(TusStore(new_storage, part_size=part), on_complete=completed, **options)
    )
    ahead = TusStore(old_storage, part_size=part).stray_parts(old_checkpoint)
    fresh = b"B" * ((ahead + 2) * part)
    answers: list[httpx.Response] = []
    stalled: threading.Thread | None = None
    try:
        upload = _create(first.url, len(fresh))
        old_storage.stall.set()
        stale = b"A" * len(fresh)
        stalled = threading.Thread(
            target=lambda: answers.append(_patch(first.url + upload, 0, stale)), daemon=True
        )
        stalled.start()
        deadline = time.monotonic() + 60
        while not (old_storage.stalled.is_set() and len(old_storage.numbers) >= ahead):
            assert time.monotonic() < deadline, old_storage.numbers
            assert stalled.is_alive(), [a.text for a in answers]
            time.sleep(0.05)
        old_lock.frozen.set()  # its lease lapses: the second server takes the upload over
        _take_over(second.url + upload, 0, fresh)
        assert new_storage.numbers
        assert not set(new_storage.numbers) & set(old_storage.numbers), (
            new_storage.numbers,
            old_storage.numbers,
        )
    finally:
        old_storage.thaw.set()
        if stalled is not None:
            stalled.join(60)
        first.stop()
        second.stop()
    assert [a.status_code for a in answers] != [204]
    (call,) = completed.calls
    assert call["sha256"] == hashlib.sha256(fresh).hexdigest()


def test_a_part_waiting_in_a_busy_pool_is_not_sent_once_the_lease_is_lost(
    seaweed: Seaweed, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first server's part waits in the sending pool (busy) while its lease lapses
    # and the second server takes the upload over; then the pool runs it.
    pool = _BusyPool()
    monkeypatch.setattr("spoolup.tus.store.io_pool", lambda: pool)
    completed = Completed()
    old_storage = _Recording(seaweed, prefix)
    old_lock = _FrozenLock(lock_for(TusStore(old_storage), ttl=1.0))
    first = Server(create_tus_app(old_storage, lock=old_lock, lease=1.0, sweep_interval=None))
    new_storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    second = Server(
        create_tus_app(new_storage, on_complete=completed, lease=1.0, sweep_interval=None)
    )
    fresh, rest = b"B" * MiB, b"C" * (PART + MiB)
    answers: list[httpx.Response] = []
    waiting: threading.Thread | None = None
    try:
        upload = _create(first.url, len(fresh) + len(rest))
        waiting = threading.Thread(
            target=lambda: answers.append(_patch(first.url + upload, 0, b"A" * PART)),
            daemon=True,
        )
        waiting.start()
        assert pool.queued.wait(60)
        old_lock.frozen.set()
        _take_over(second.url + upload, 0, fresh)  # a tail: nothing for the pool
        old_storage.taken.set()
        old_lock.frozen.clear()
        pool.go.set()
        waiting.join(60)
        assert [a.status_code for a in answers] == [423]
        assert old_storage.late == []
        assert _patch(second.url + upload, len(fresh), rest).status_code == 204
    finally:
        pool.go.set()
        if waiting is not None:
            waiting.join(60)
        first.stop()
        second.stop()
        pool.pool.shutdown()
    (call,) = completed.calls
    assert call["sha256"] == hashlib.sha256(fresh + rest).hexdigest()


def test_a_takeover_with_no_part_numbers_left_is_refused_for_good(
    seaweed: Seaweed, prefix: str
) -> None:
    # Taken over too often: the numbers a takeover skips leave no room for the rest
    # of the upload in S3's 10,000. The PATCH is refused (409) before anything is
    # written, and so is every later one, also one that takes a free lease (no
    # takeover): none may number a part where the lapsed holder's could still land.
    storage = _Recording(seaweed, prefix)
    store = TusStore(storage)
    server = Server(create_tus_app(store, lease=1.0, sweep_interval=None))
    try:
        upload = _create(server.url, 2 * MiB)
        info = store.load(upload)
        assert info is not None
        info.backend["floor"] = 9_990
        store.save(info)
        assert lock_for(store, ttl=0.5).acquire(upload, "a-server-that-froze") is not None
        deadline = time.monotonic() + 60
        while (r := _patch(server.url + upload, 0, b"x" * 2 * MiB)).status_code == 423:
            assert time.monotonic() < deadline, "the lapsed lease was never taken over"
            time.sleep(0.1)
        assert r.status_code == 409, r.text
        assert "no part numbers left" in r.text
        again = _patch(server.url + upload, 0, b"x" * 2 * MiB)
        assert again.status_code == 409, again.text
        head = httpx.head(server.url + upload, headers=TUS, timeout=30)
        assert head.headers["upload-offset"] == "0"
    finally:
        server.stop()
    assert storage.numbers == []


def test_a_part_past_the_last_part_number_is_refused(seaweed: Seaweed, prefix: str) -> None:
    # A deferred length cannot be checked up front: the writer refuses the part that
    # would be numbered past 10,000 (409, not a crash), the ones before it are kept.
    storage = _Recording(seaweed, prefix)
    store = TusStore(storage)
    server = Server(create_tus_app(store, sweep_interval=None))
    try:
        r = httpx.post(server.url, headers={**TUS, "Upload-Defer-Length": "1"}, timeout=30)
        assert r.status_code == 201, r.text
        upload = httpx.URL(r.headers["location"]).path.rsplit("/", 1)[1]
        info = store.load(upload)
        assert info is not None
        info.backend["floor"] = 9_999
        store.save(info)
        r = _patch(server.url + upload, 0, b"x" * 2 * PART)
        assert r.status_code == 409, r.text
        assert "no part numbers left" in r.text
    finally:
        server.stop()
    assert storage.numbers == [10_000]


class _HeldStateSave:
    """A boto3 client whose first state PUT (``.../info``) once ``late`` is set is held
    on the wire until ``land``, then sent as it was."""

    def __init__(self, seaweed: Seaweed) -> None:
        self.client = seaweed.client()
        self.late = threading.Event()
        self.held = threading.Event()
        self.land = threading.Event()
        self.client.meta.events.register("before-send.s3.PutObject", self._hold)

    def _hold(self, request: Any, **_: Any) -> None:
        if self.late.is_set() and request.url.split("?")[0].endswith("/info"):
            self.late.clear()
            self.held.set()
            assert self.land.wait(60)


def test_a_late_state_save_of_a_frozen_holder_undoes_nothing(seaweed: Seaweed, prefix: str) -> None:
    # The first server's save of the state is on the wire when it freezes; the second
    # takes the upload over and finishes it (a record, at its final key). Then the old
    # save lands: it must not turn the upload back into an unfinished one, whose
    # expiry would delete the file its record names.
    data = b"F" * 2 * MiB
    completed = Completed()
    held = _HeldStateSave(seaweed)
    options: dict[str, Any] = {
        "lease": 1.0,
        "sweep_interval": None,
        "final_key": lambda info: f"kept/{info.id}",
    }
    old_storage = S3Storage(seaweed.bucket, prefix, client=held.client)
    old_lock = _FrozenLock(lock_for(TusStore(old_storage), ttl=1.0))
    first = Server(create_tus_app(old_storage, lock=old_lock, **options))
    storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    second = Server(create_tus_app(storage, on_complete=completed, **options))
    answers: list[httpx.Response] = []
    stale: threading.Thread | None = None
    try:
        upload = _create(first.url, len(data))
        held.late.set()
        stale = threading.Thread(
            target=lambda: answers.append(_patch(first.url + upload, 0, b"A" * MiB)), daemon=True
        )
        stale.start()
        assert held.held.wait(60)
        old_lock.frozen.set()
        _take_over(second.url + upload, 0, data)
        old_lock.frozen.clear()
        held.land.set()
        stale.join(60)
        assert [a.status_code for a in answers] == [423]
        head = httpx.head(second.url + upload, headers=TUS, timeout=30)
        assert head.headers["upload-offset"] == str(len(data))
        assert "spoolup-file-record" in head.headers
    finally:
        held.land.set()
        if stale is not None:
            stale.join(60)
        first.stop()
        second.stop()
    later = create_tus_app(storage, clock=lambda: time.time() + 10 * 24 * 3600, **options)
    asyncio.run(later.sweep())
    assert storage.read_bytes(f"kept/{upload}") == data
    (call,) = completed.calls
    assert call["data"] == data


class _FreezesOnConcat(_Recording):
    """Once ``taken`` is set (the partial uploads are in), opening the second partial
    upload to copy it freezes the lock and waits out the lease."""

    def __init__(self, seaweed: Seaweed, prefix: str) -> None:
        super().__init__(seaweed, prefix)
        self.lock = _FrozenLock(lock_for(TusStore(self), ttl=1.0))
        self.opened = 0

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> BinaryIO:
        if self.taken.is_set():
            self.opened += 1
            if self.opened == 2:
                self.lock.frozen.set()
                # Past half a lease since the last renewal: the holder's check now fails.
                time.sleep(self.lock.ttl)
        return super().open(key, start=start, end=end)


def test_a_concatenation_stops_writing_once_its_lease_is_lost(
    seaweed: Seaweed, prefix: str
) -> None:
    # Every write to storage is fenced, also the parts a concatenation copies.
    part = 5 * MiB
    storage = _FreezesOnConcat(seaweed, prefix)
    lock = storage.lock
    app = create_tus_app(
        TusStore(storage, part_size=part), lock=lock, lease=1.0, sweep_interval=None
    )
    server = Server(app)
    try:
        partial = {**TUS, "Upload-Concat": "partial"}
        paths = []
        for _ in range(2):
            r = httpx.post(
                server.url, headers={**partial, "Upload-Length": str(2 * part)}, timeout=30
            )
            assert r.status_code == 201, r.text
            paths.append(httpx.URL(r.headers["location"]).path)
            assert _patch(server.base + paths[-1], 0, b"p" * 2 * part).status_code == 204
        storage.taken.set()
        r = httpx.post(
            server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(paths)}, timeout=60
        )
        # The renewal fails (the lock store is unreachable as far as it knows): 500.
        assert r.status_code == 500, r.text
    finally:
        lock.frozen.clear()
        server.stop()
    # The first partial upload's parts may have gone (checked before the freeze);
    # the second's never do.
    assert storage.late[:1] == [1]
    assert not {3, 4} & set(storage.late)
