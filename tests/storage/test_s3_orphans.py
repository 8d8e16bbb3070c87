"""S3 multipart uploads are never orphaned for good: a failed abort is retried, old ones swept."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Any
from unittest.mock import patch

import pytest
from botocore.exceptions import EndpointConnectionError

from spoolup.storage.s3 import S3Storage
from tests.seaweed import Seaweed

pytestmark = pytest.mark.s3

MiB = 1024 * 1024


def uploads(storage: S3Storage) -> dict[str, str]:
    response = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=storage.prefix)
    return {u["UploadId"]: u["Key"] for u in response.get("Uploads", [])}


def _down(*args: Any, **kwargs: Any) -> None:
    raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


def test_an_abort_that_fails_is_retried_by_the_next_cleanup(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spoolup.storage")
    writer = s3_storage.open_writer("big.bin")
    writer.write(b"x" * (6 * MiB))  # one part sent: the multipart upload exists
    assert len(uploads(s3_storage)) == 1
    with monkeypatch.context() as patched:
        patched.setattr(s3_storage.client, "abort_multipart_upload", _down)
        writer.abort()  # the store is "down": the abort fails, quietly
        assert len(uploads(s3_storage)) == 1
        assert "the next cleanup retries" in caplog.text
        assert s3_storage.cleanup() == 0  # still down: remembered, not lost
    # The store is back: a young upload is aborted because its abort is owed.
    assert s3_storage.cleanup() == 1
    assert uploads(s3_storage) == {}
    assert "aborted the orphaned multipart upload" in caplog.text


def test_cleanup_sweeps_old_orphans_but_not_live_ones(s3_storage: S3Storage) -> None:
    client, bucket, prefix = s3_storage.client, s3_storage.bucket, s3_storage.prefix
    orphan = client.create_multipart_upload(Bucket=bucket, Key=prefix + "orphan")["UploadId"]
    live_tus = client.create_multipart_upload(Bucket=bucket, Key=prefix + "tus/x")["UploadId"]
    mine = s3_storage.begin_multipart("mine")  # being written by this process
    outside = client.create_multipart_upload(Bucket=bucket, Key="elsewhere/x")["UploadId"]
    try:
        assert s3_storage.cleanup(3600) == 0  # all younger than an hour
        assert s3_storage.cleanup(0, keep={live_tus}) == 1
        assert set(uploads(s3_storage)) == {live_tus, mine}
        assert orphan not in uploads(s3_storage)
    finally:
        client.abort_multipart_upload(Bucket=bucket, Key="elsewhere/x", UploadId=outside)
        s3_storage.abort_multipart("mine", mine)
        client.abort_multipart_upload(Bucket=bucket, Key=prefix + "tus/x", UploadId=live_tus)


def leases(storage: S3Storage) -> list[str]:
    listing = storage.client.list_objects_v2(
        Bucket=storage.bucket, Prefix=storage.prefix + storage.writes_prefix
    )
    return [entry["Key"] for entry in listing.get("Contents", [])]


def neighbour(storage: S3Storage, ttl: float) -> S3Storage:
    """Another process on the same bucket and prefix (its own owner id, its own sweep)."""
    other = S3Storage(storage.bucket, storage.prefix, part_size=5 * MiB, client=storage.client)
    other.own_writes(ttl)
    return other


def test_an_owned_write_holds_a_lease_while_it_lives_and_drops_it_at_the_end(
    s3_storage: S3Storage,
) -> None:
    s3_storage.own_writes(1.0)
    other = neighbour(s3_storage, 1.0)
    committed = s3_storage.open_writer("kept.bin")
    aborted = s3_storage.open_writer("dropped.bin")
    for writer in (committed, aborted):
        writer.write(b"x" * (6 * MiB))
    assert len(uploads(s3_storage)) == 2
    assert len(leases(s3_storage)) == 2
    time.sleep(2.5)  # past two leases: only the renewals keep them
    # A live write is never aborted by another process's sweep, however short its lease.
    assert other.cleanup() == 0
    assert len(uploads(s3_storage)) == 2
    committed.write(b"y")
    assert committed.commit().size == 6 * MiB + 1
    aborted.abort()
    assert uploads(s3_storage) == {}
    assert leases(s3_storage) == []


def test_a_dead_writers_upload_and_lease_are_swept_once_the_lease_lapses(
    s3_storage: S3Storage, seaweed: Seaweed
) -> None:
    """The writer's process is killed (kill -9) mid-write: any other process's sweep aborts it."""
    script = f"""
import os, sys
from spoolup.storage.s3 import S3Storage
from tests.seaweed import Seaweed
storage = S3Storage({s3_storage.bucket!r}, {s3_storage.prefix!r}, part_size=5 * 1024 * 1024)
storage.own_writes(1.0)
writer = storage.open_writer("dying.bin")
writer.write(b"x" * (6 * 1024 * 1024))
writer._collect(set(writer._in_flight))  # the first part is in
print("written", flush=True)
sys.stdin.readline()
"""
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **seaweed.env()},
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"written\n"
            assert len(uploads(s3_storage)) == 1
            assert len(leases(s3_storage)) == 1
        finally:
            child.kill()
            child.wait()
    other = neighbour(s3_storage, 1.0)
    # Not by age: a day has not passed. Once the lease runs out (1 s), the next sweep.
    deadline = time.monotonic() + 60
    while uploads(s3_storage) or leases(s3_storage):
        assert time.monotonic() < deadline, (uploads(s3_storage), leases(s3_storage))
        other.cleanup()
        time.sleep(0.2)


def test_a_lease_left_without_its_upload_is_removed(s3_storage: S3Storage) -> None:
    """A writer killed between completing its upload and dropping its lease."""
    s3_storage.own_writes(0.5)
    writer = s3_storage.open_writer("done.bin")
    writer.write(b"x" * (6 * MiB))
    owners = s3_storage._owners
    assert owners is not None
    with patch.object(owners, "drop"):  # the process "dies" before the drop
        writer.commit()
    assert len(leases(s3_storage)) == 1
    with patch.object(owners, "_renew_due"):  # dead: no renewals
        time.sleep(1.0)
        assert neighbour(s3_storage, 0.5).cleanup() == 1
    assert leases(s3_storage) == []
    assert s3_storage.stat("done.bin").size == 6 * MiB
