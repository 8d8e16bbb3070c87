"""Consecutive PATCHes on one server park the upload's lease between them and take it
back with one conditional write, without reading the state (or the S3 tail) again;
another server takes a parked lease at once."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from spoolup.storage.s3 import S3Storage
from spoolup.tus import create_tus_app
from tests.seaweed import Seaweed
from tests.tus.conftest import Completed, Env, Server
from tests.tus.test_app import create, patch

MiB = 1024 * 1024


def count_calls(env: Env, server: Server) -> Counter[str]:
    """Count the lock's acquires and resumes, the state's reads and saves, and the
    looks for bytes lost since the last checkpoint, from now on."""
    calls: Counter[str] = Counter()
    app = server.app
    lock = app.lock
    for name in ("acquire", "resume"):
        real = getattr(lock, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(*args)

        setattr(lock, name, counted)
    for name in ("load", "save", "fall_back"):
        real = getattr(app.store, name)

        def counted_store(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kw)

        setattr(app.store, name, counted_store)
    return calls


def test_consecutive_patches_resume_the_parked_lease(env: Env, client: httpx.Client) -> None:
    server = env.start()
    data = os.urandom(50_000)
    url = create(client, server, len(data))
    calls = count_calls(env, server)
    for start in range(0, len(data), 10_000):
        assert patch(client, url, start, data[start : start + 10_000]).status_code == 204
    # The first PATCH takes the lease and reads the state; the four after it take the
    # parked lease back, and know from that the state they kept is current, and that
    # no byte after its last checkpoint can have been lost (this process saved it,
    # and lives). Each unfinished PATCH saves the state once; the last one saves it
    # when finishing the upload (before completing it in the backend, so that a crash
    # in between leaves it whole, and after) and when handing it on, not before.
    assert calls == {"acquire": 1, "load": 1, "resume": 4, "save": 4 + 3}
    assert env.completed.calls[0]["sha256"] == hashlib.sha256(data).hexdigest()
    # The finished upload's lease is released, not parked: nothing is left.
    assert env.lease_owner(url.rsplit("/", 1)[1]) is None


def test_another_server_takes_a_parked_lease_at_once(env: Env, client: httpx.Client) -> None:
    first, second = env.start(), env.start()
    data = os.urandom(40_000)
    url = create(client, first, len(data))
    path = url.removeprefix(first.base)
    calls = count_calls(env, first)
    assert patch(client, first.base + path, 0, data[:10_000]).status_code == 204
    # The lease is parked on the first server: the second one is not kept waiting.
    assert patch(client, second.base + path, 10_000, data[10_000:20_000]).status_code == 204
    # Back on the first: its parked lease moved on, so it takes a fresh one and reads
    # the state the second server wrote (a stale offset would answer 409).
    assert patch(client, first.base + path, 20_000, data[20_000:30_000]).status_code == 204
    assert patch(client, first.base + path, 30_000, data[30_000:]).status_code == 204
    # (The two servers share one store: its loads count the second server's one too.)
    # A state read from the store is checked for bytes lost after its checkpoint.
    assert calls == {"acquire": 2, "load": 3, "resume": 2, "save": 3 + 3, "fall_back": 2}
    assert env.completed.calls[0]["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.fixture
def prefix(seaweed: Seaweed) -> Iterator[str]:
    name = f"park-{uuid.uuid4().hex[:12]}"
    yield name
    client = seaweed.client()
    listing = client.list_objects_v2(Bucket=seaweed.bucket, Prefix=name)
    for entry in listing.get("Contents", []):
        client.delete_object(Bucket=seaweed.bucket, Key=entry["Key"])


@pytest.mark.s3
def test_s3_requests_of_a_small_patch(seaweed: Seaweed, prefix: str) -> None:
    s3 = seaweed.client()
    sent: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: sent.append(model.name))
    storage = S3Storage(seaweed.bucket, prefix, client=s3)
    completed = Completed()
    server = Server(create_tus_app(storage, on_complete=completed, sweep_interval=None))
    data = os.urandom(20 * MiB)
    try:
        with httpx.Client(headers={"Tus-Resumable": "1.0.0"}, timeout=60) as client:
            url = create(client, server, len(data))
            per_patch = []
            for start in range(0, len(data), 3 * MiB):
                sent.clear()
                r = patch(client, url, start, data[start : start + 3 * MiB])
                assert r.status_code == 204
                per_patch.append(Counter(sent))
    finally:
        server.stop()
    assert completed.calls[0]["sha256"] == hashlib.sha256(data).hexdigest()
    # 3 MiB PATCHes, 8 MiB parts: the bytes short of a part wait in the tail object.
    # After the first PATCH, each unfinished one writes the lease back (resume), the
    # tail or a part, the state, and parks the lease: nothing is read.
    for counts in per_patch[1:-1]:
        assert counts["GetObject"] == 0, counts
        assert counts["PutObject"] + counts["UploadPart"] <= 5, counts
        assert sum(counts.values()) <= 5, counts


@pytest.mark.s3
def test_s3_last_patch_sends_no_tail_and_deletes_one_only_if_written(
    seaweed: Seaweed, prefix: str
) -> None:
    s3 = seaweed.client()
    deleted: list[str] = []
    put: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        deleted.append(params["Key"].rsplit("/", 1)[1])

    def record_put(params: dict[str, Any], **_: Any) -> None:
        put.append(params["Key"].rsplit("/", 1)[1])

    s3.meta.events.register("before-parameter-build.s3.DeleteObject", record)
    s3.meta.events.register("before-parameter-build.s3.PutObject", record_put)
    storage = S3Storage(seaweed.bucket, prefix, client=s3)
    completed = Completed()
    server = Server(create_tus_app(storage, on_complete=completed, sweep_interval=None))
    whole, cut = os.urandom(16 * MiB), os.urandom(9 * MiB)
    try:
        with httpx.Client(headers={"Tus-Resumable": "1.0.0"}, timeout=60) as client:
            # Whole 8 MiB parts: no byte ever waited in <id>/tail.
            url = create(client, server, len(whole))
            for start in range(0, len(whole), 8 * MiB):
                deleted.clear()
                assert patch(client, url, start, whole[start : start + 8 * MiB]).status_code == 204
            # (<id>/data is the finished object, handed on: the callback copied it.)
            assert sorted(deleted) == ["data", "lock"]
            # 3 MiB waited in the tail after the first PATCH: the last one deletes it.
            url = create(client, server, len(cut))
            assert patch(client, url, 0, cut[: 3 * MiB]).status_code == 204
            deleted.clear()
            put.clear()
            assert patch(client, url, 3 * MiB, cut[3 * MiB :]).status_code == 204
            assert sorted(deleted) == ["data", "lock", "tail.0"]  # found by a listing
            # Its last 1 MiB went out as the last part, never through a tail.
            assert not [name for name in put if name.startswith("tail")]
    finally:
        server.stop()
    digests = [call["sha256"] for call in completed.calls]
    assert digests == [hashlib.sha256(whole).hexdigest(), hashlib.sha256(cut).hexdigest()]
