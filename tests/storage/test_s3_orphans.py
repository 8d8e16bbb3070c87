"""S3 multipart uploads are never orphaned for good: a failed abort is retried, old ones swept."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from spoolup.storage.s3 import S3Storage

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
