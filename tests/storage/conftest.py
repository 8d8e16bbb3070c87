"""Fixtures for the storage tests: a LocalStorage in a temp folder, an S3Storage on SeaweedFS.

``storage`` runs a test against both backends; the S3 one is marked ``s3`` and each
test gets its own key prefix in the session's bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spoolup.storage import LocalStorage, ResumableStorage
from spoolup.storage.s3 import S3Storage
from tests.seaweed import Seaweed

MiB = 1024 * 1024


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "root")


@pytest.fixture(scope="session")
def s3_client(seaweed: Seaweed) -> Any:
    # One client for the session: making one costs a few hundred milliseconds.
    return seaweed.client()


@pytest.fixture
def s3_storage(seaweed: Seaweed, s3_client: Any) -> Iterator[S3Storage]:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    storage = S3Storage(seaweed.bucket, prefix, part_size=5 * MiB, concurrency=2, client=s3_client)
    yield storage
    # Leave nothing behind for the next test: objects and multipart uploads.
    uploads = s3_client.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=storage.prefix)
    for upload in uploads.get("Uploads", []):
        s3_client.abort_multipart_upload(
            Bucket=seaweed.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
    listing = s3_client.list_objects_v2(Bucket=seaweed.bucket, Prefix=storage.prefix)
    for entry in listing.get("Contents", []):
        s3_client.delete_object(Bucket=seaweed.bucket, Key=entry["Key"])


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest) -> ResumableStorage:
    name = "local_storage" if request.param == "local" else "s3_storage"
    backend: ResumableStorage = request.getfixturevalue(name)
    return backend
