"""Write leases: exclusion, takeover after a lapse, renewal, fencing, on every lease store.

The same tests run over a folder (flock), S3 conditional writes on a real SeaweedFS,
and a real Redis (skipped, saying why, when ``redis-server`` is not installed).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from spoolup.storage import StorageError
from spoolup.storage.leases import _S3Cells
from spoolup.storage.local import LocalStorage
from spoolup.storage.s3 import S3Storage
from spoolup.tus.lock import (
    ConditionalWritesUnsupported,
    Lease,
    LeaseKeeper,
    LeaseLost,
    ObjectLock,
    UploadLock,
    lock_for,
)
from spoolup.tus.store import TusStore
from tests.redis_server import redis_server
from tests.seaweed import Seaweed
from tests.tus.conftest import Clock

__all__ = ["redis_server"]

UPLOAD = "AbCdEfGhIjKlMnOpQrStUv"


def make_lock(kind: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any) -> Any:
    clock = options.pop("clock", Clock())
    ttl = options.pop("ttl", 3.0)
    if kind == "local":
        return lock_for(TusStore(LocalStorage(tmp_path / "s")), ttl=ttl, clock=clock)
    if kind == "s3":
        seaweed: Seaweed = request.getfixturevalue("seaweed")
        prefix = f"lock-{uuid.uuid4().hex[:10]}"
        storage3 = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
        return lock_for(TusStore(storage3), ttl=ttl, clock=clock)
    server = request.getfixturevalue("redis_server")
    return lock_for(None, server.url, ttl=ttl, clock=clock)


KINDS = ["local", pytest.param("s3", marks=pytest.mark.s3), "redis"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lock(kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> UploadLock:
    return make_lock(kind, request, tmp_path, clock=clock)  # type: ignore[no-any-return]


def upload_id() -> str:
    return uuid.uuid4().hex[:22]


def test_one_holder_at_a_time(lock: UploadLock) -> None:
    uid = upload_id()
    first = lock.acquire(uid, "server-a")
    assert first is not None
    assert lock.acquire(uid, "server-b") is None
    assert first.taken_over is False
    lock.release(first)
    second = lock.acquire(uid, "server-b")
    assert second is not None
    # Released, not lapsed: the next holder need not fear the first one's late writes.
    assert second.taken_over is False
    assert lock.acquire(uid, "server-a") is None


@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_a_lapsed_lease_is_taken_over_and_its_holder_is_fenced(
    lock: UploadLock, clock: Clock
) -> None:
    uid = upload_id()
    old = lock.acquire(uid, "server-a")
    assert old is not None
    clock.now += lock.ttl + 0.1
    new = lock.acquire(uid, "server-b")
    assert new is not None
    assert new.taken_over
    assert new.generation == old.generation + 1
    with pytest.raises(LeaseLost) as caught:
        lock.renew(old)
    assert caught.value.status == 423
    lock.release(old)  # the old holder's release leaves the new lease alone
    assert lock.acquire(uid, "server-c") is None
    assert lock.renew(new).until > new.until - 1


def test_a_lapsed_lease_nobody_took_is_renewed(lock: UploadLock, clock: Clock) -> None:
    uid = upload_id()
    lease = lock.acquire(uid, "server-a")
    assert lease is not None
    clock.now += lock.ttl + 0.1
    renewed = lock.renew(lease)
    assert renewed.until == pytest.approx(clock.now + lock.ttl)


def test_own_leftover_is_taken_afresh(lock: UploadLock) -> None:
    uid = upload_id()
    stale = lock.acquire(uid, "server-a")
    assert stale is not None
    again = lock.acquire(uid, "server-a")
    assert again is not None
    with pytest.raises(LeaseLost):
        lock.renew(stale)
    lock.discard(uid)
    assert lock.acquire(uid, "server-b") is not None


def test_local_lease_records_are_rewritten_in_place(tmp_path: Path) -> None:
    lock = lock_for(TusStore(LocalStorage(tmp_path / "s")), clock=Clock())
    uid = upload_id()
    lease = lock.acquire(uid, "server-a")
    assert lease is not None
    record = tmp_path / "s" / ".tus-leases" / f"{uid}.lock"
    inode = record.stat().st_ino
    parked = lock.park(lease)
    assert parked is not None
    resumed = lock.resume(parked)
    assert resumed is not None
    # The same file, no temp file beside it.
    assert record.stat().st_ino == inode
    assert [p.name for p in record.parent.iterdir()] == [record.name]
    # A crash cut a record short mid-write: it no longer parses, so it counts as lapsed.
    record.write_bytes(record.read_bytes()[:12])
    taken = lock.acquire(uid, "server-b")
    assert taken is not None
    assert taken.taken_over
    with pytest.raises(LeaseLost):
        lock.renew(resumed)
    assert lock.resume(parked) is None


def test_racing_acquirers_have_one_winner(lock: UploadLock) -> None:
    for _ in range(2):
        uid = upload_id()
        barrier = threading.Barrier(8)
        winners: list[str] = []

        def race(
            owner: str,
            uid: str = uid,
            barrier: threading.Barrier = barrier,
            winners: list[str] = winners,
        ) -> None:
            barrier.wait()
            if lock.acquire(uid, owner) is not None:
                winners.append(owner)

        threads = [threading.Thread(target=race, args=(f"server-{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(winners) == 1


def test_real_time_expiry_and_keeper(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """With the real clock: a kept lease outlives its ttl; an unkept one lapses."""
    import time

    # A ttl long enough that a loaded machine renews in time (renewal at ttl / 2).
    lock = make_lock(kind, request, tmp_path, ttl=2.0, clock=time.time)
    uid = upload_id()
    lease = lock.acquire(uid, "server-a")
    assert lease is not None

    async def hold() -> None:
        async with LeaseKeeper(lock, lease) as keeper:
            await asyncio.sleep(2.5)  # past the ttl: renewed in the background
            assert lock.acquire(uid, "server-b") is None
            keeper.check()
        assert lock.acquire(uid, "server-b") is not None  # released on leaving

    asyncio.run(hold())
    # Nobody renews server-b's lease: it lapses and server-c may take it over.
    deadline = time.monotonic() + 30
    while lock.acquire(uid, "server-c") is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_keeper_fences_after_a_stall(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A holder that stalled past its lease while another took over may not write."""
    clock = Clock()
    ticks = [0.0]
    lock = make_lock(kind, request, tmp_path, ttl=3.0, clock=clock)
    uid = upload_id()
    lease = lock.acquire(uid, "server-a")
    assert lease is not None
    keeper = LeaseKeeper(lock, lease, monotonic=lambda: ticks[0])
    keeper.check()  # fresh: no store call needed
    # Stalled (SIGSTOP, swap) for 10 s; meanwhile the lease lapsed and server-b took it.
    ticks[0] += 10
    clock.now += 10
    if kind == "redis":
        lock.discard(uid)  # Redis expires by its own clock: make the lapse happen now
    assert lock.acquire(uid, "server-b") is not None
    with pytest.raises(LeaseLost):
        keeper.check()
    assert keeper.lost
    with pytest.raises(LeaseLost):
        keeper.check()


def test_keeper_renews_a_lapsed_lease_nobody_took(tmp_path: Path) -> None:
    clock = Clock()
    ticks = [0.0]
    lock = lock_for(TusStore(LocalStorage(tmp_path)), ttl=3.0, clock=clock)
    lease = lock.acquire(UPLOAD, "server-a")
    assert lease is not None
    keeper = LeaseKeeper(lock, lease, monotonic=lambda: ticks[0])
    ticks[0] += 10
    clock.now += 10
    keeper.check()  # renewed: nobody else wanted it
    assert keeper.lease.until == pytest.approx(clock.now + 3.0)
    assert lock.acquire(UPLOAD, "server-b") is None


class _IgnoresConditions:
    """An S3 client like some stores: it accepts If-None-Match and ignores it."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, **args: Any) -> dict[str, str]:
        self.objects[args["Key"]] = args["Body"]
        return {"ETag": '"x"'}

    def delete_object(self, **args: Any) -> dict[str, str]:
        self.objects.pop(args["Key"], None)
        return {}


def test_a_store_ignoring_conditions_is_refused() -> None:
    client = _IgnoresConditions()
    lock = ObjectLock(_S3Cells(client, "bucket", lambda name: f"tus/{name}"))
    with pytest.raises(ConditionalWritesUnsupported, match="redis"):
        lock.acquire(UPLOAD, "server-a")
    assert client.objects == {}  # the probe cleaned up


@pytest.mark.s3
def test_seaweedfs_honours_conditional_writes(seaweed: Seaweed) -> None:
    """What the S3 lease relies on, checked against the SeaweedFS in the lock file."""
    from botocore.exceptions import ClientError

    client = seaweed.client()
    key = f"cond-{uuid.uuid4().hex}"
    try:
        first = client.put_object(Bucket=seaweed.bucket, Key=key, Body=b"1", IfNoneMatch="*")
        with pytest.raises(ClientError) as caught:
            client.put_object(Bucket=seaweed.bucket, Key=key, Body=b"2", IfNoneMatch="*")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        second = client.put_object(Bucket=seaweed.bucket, Key=key, Body=b"3", IfMatch=first["ETag"])
        with pytest.raises(ClientError) as caught:
            client.put_object(Bucket=seaweed.bucket, Key=key, Body=b"4", IfMatch=first["ETag"])
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        with pytest.raises(ClientError):
            client.delete_object(Bucket=seaweed.bucket, Key=key, IfMatch=first["ETag"])
        client.delete_object(Bucket=seaweed.bucket, Key=key, IfMatch=second["ETag"])
        with pytest.raises(ClientError):
            client.head_object(Bucket=seaweed.bucket, Key=key)
    finally:
        client.delete_object(Bucket=seaweed.bucket, Key=key)


def test_lock_urls(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="redis://"):
        lock_for(None, "http://127.0.0.1:6379")
    with pytest.raises(TypeError):
        lock_for(object())
    with pytest.raises(ValueError, match="between"):
        lock_for(TusStore(LocalStorage(tmp_path)), ttl=0)


def test_a_lapsed_redis_lease_is_taken_over_and_its_holder_is_fenced(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Redis expires a lease by its own clock: a real, short one."""
    import time

    lock = make_lock("redis", request, tmp_path, ttl=0.3, clock=time.time)
    uid = upload_id()
    old = lock.acquire(uid, "server-a")
    assert old is not None
    assert lock.acquire(uid, "server-b") is None
    time.sleep(0.5)
    new = lock.acquire(uid, "server-b")
    assert new is not None
    assert new.generation == old.generation + 1
    assert new.taken_over  # lapsed: its holder may still be writing
    with pytest.raises(LeaseLost):
        lock.renew(old)
    lock.release(old)  # leaves the new lease alone, and records no release
    assert lock.acquire(uid, "server-c") is None
    lock.renew(new)
    lock.release(new)
    after = lock.acquire(uid, "server-c")
    assert after is not None
    assert after.taken_over is False


class _Unreachable(UploadLock):
    """A lock store that does not answer."""

    def acquire(self, upload_id: str, owner: str) -> Lease | None:
        raise StorageError("the lock store does not answer")

    def renew(self, lease: Lease) -> Lease:
        raise AssertionError("never taken")

    def release(self, lease: Lease) -> None:
        raise AssertionError("never taken")

    def discard(self, upload_id: str) -> None:
        """Nothing to discard."""


def test_an_unreachable_lock_store_fails_the_request_cleanly(tmp_path: Path) -> None:
    # The request's work was made before its lease was asked for: it is closed, never
    # left unawaited (a RuntimeWarning, an error here).
    import gc

    import httpx

    from tests.tus.conftest import Env

    env = Env(tmp_path / "store")
    try:
        server = env.start(lock=_Unreachable())
        r = httpx.post(server.url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5"})
        assert r.status_code == 201, r.text
        with httpx.Client(headers={"Tus-Resumable": "1.0.0"}) as client:
            r = client.patch(
                server.base + r.headers["location"],
                content=b"hello",
                headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            )
            assert r.status_code == 500
        gc.collect()
    finally:
        env.close()
