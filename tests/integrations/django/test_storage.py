"""DjangoStorageHandler: straight into FileSystemStorage, django-storages' S3, any Storage."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage, InMemoryStorage, storages
from django.test import RequestFactory, override_settings

from spoolup import FileTooLarge, Limits
from spoolup.files import FileInfo
from spoolup.handlers import HashingHandler, SizeLimitHandler
from spoolup.integrations.django import DjangoStorageHandler, StoredFile, parse_form
from tests.integrations.django.conftest import MEDIA, TEMP, files_under
from tests.integrations.django.helpers import multipart
from tests.seaweed import Seaweed

MiB = 1024 * 1024


def _request(files: dict[str, tuple[str, bytes, str]]) -> Any:
    body, content_type = multipart({"title": "t"}, files)
    return RequestFactory().generic("POST", "/x/", body, content_type=content_type)


def _parse(files: dict[str, tuple[str, bytes, str]], *handlers: Any, **limits: int) -> Any:
    return parse_form(_request(files), handlers=handlers, limits=Limits(**limits))


def test_filesystem_storage_writes_beside_and_links_into_place() -> None:
    data = os.urandom(3 * MiB)
    handler = functools.partial(DjangoStorageHandler, upload_to="backups/%Y/")
    with override_settings(FILE_UPLOAD_PERMISSIONS=0o640):
        form = _parse(
            {"f": ("dump.bin", data, "application/octet-stream")}, HashingHandler, handler
        )
    with form:
        f = form.files["f"]
        assert isinstance(f, StoredFile)
        assert f.name.startswith("backups/2")
        assert f.name.endswith("/dump.bin")
        assert f.hashes["sha256"] == hashlib.sha256(data).hexdigest()
        assert f.read() == data
        path = MEDIA / f.name
        assert path.read_bytes() == data
        assert path.stat().st_mode & 0o777 == 0o640
        assert path.stat().st_nlink == 1  # the temp name is gone
    assert files_under(MEDIA) == [path]  # closing the form keeps the stored file
    assert files_under(TEMP) == []


def test_without_upload_permissions_the_umask_decides() -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    with override_settings(FILE_UPLOAD_PERMISSIONS=None):
        form = _parse({"f": ("a.txt", b"x", "text/plain")}, DjangoStorageHandler)
    with form:
        mode = (MEDIA / form.files["f"].name).stat().st_mode & 0o777
    assert mode == 0o666 & ~umask


def test_filesystem_storage_never_overwrites() -> None:
    first = _parse({"f": ("same.txt", b"first", "text/plain")}, DjangoStorageHandler)
    second = _parse({"f": ("same.txt", b"second", "text/plain")}, DjangoStorageHandler)
    with first, second:
        names = {first.files["f"].name, second.files["f"].name}
    assert len(names) == 2
    assert sorted(p.read_bytes() for p in files_under(MEDIA)) == [b"first", b"second"]


def test_a_failed_upload_leaves_nothing_in_storage() -> None:
    files = {
        "a": ("a.bin", b"a" * 1000, "application/octet-stream"),
        "b": ("b.bin", b"b" * 5000, "application/octet-stream"),
    }
    with pytest.raises(FileTooLarge):
        _parse(files, functools.partial(SizeLimitHandler, 4000), DjangoStorageHandler)
    assert files_under(MEDIA) == []  # "a" was stored, then deleted; "b" aborted midway


def test_upload_to_callable_and_storage_alias() -> None:
    def where(info: FileInfo, filename: str) -> str:
        return f"by-field/{info.field_name}/{filename}"

    memory = InMemoryStorage()
    handler = functools.partial(DjangoStorageHandler, memory, upload_to=where)
    with _parse({"avatar": ("me.png", b"png!", "image/png")}, handler) as form:
        f = form.files["avatar"]
        assert f.name == "by-field/avatar/me.png"
        assert f.read() == b"png!"
    assert memory.open("by-field/avatar/me.png").read() == b"png!"  # through save()
    assert files_under(TEMP) == []
    handler = functools.partial(DjangoStorageHandler, "default")
    with _parse({"f": ("x.txt", b"x", "text/plain")}, handler) as form:
        assert isinstance(storages["default"], FileSystemStorage)
        assert (MEDIA / form.files["f"].name).read_bytes() == b"x"


def test_client_names_cannot_escape_the_storage() -> None:
    with _parse({"f": ("../../etc/passwd", b"x", "text/plain")}, DjangoStorageHandler) as form:
        assert form.files["f"].name == "passwd"
    assert files_under(MEDIA) == [MEDIA / "passwd"]


@pytest.fixture
def s3(seaweed: Seaweed) -> Iterator[Any]:
    from storages.backends.s3 import S3Storage

    storage = S3Storage(
        bucket_name=seaweed.bucket,
        endpoint_url=seaweed.endpoint,
        access_key=seaweed.access_key,
        secret_key=seaweed.secret_key,
        region_name=seaweed.region,
        location="django-tests",
        file_overwrite=False,
    )
    yield storage
    client = seaweed.client()
    listed = client.list_objects_v2(Bucket=seaweed.bucket, Prefix="django-tests/")
    for item in listed.get("Contents", []):
        client.delete_object(Bucket=seaweed.bucket, Key=item["Key"])


@pytest.mark.s3
def test_s3_storage_gets_a_streamed_multipart_upload(s3: Any, seaweed: Seaweed) -> None:
    data = os.urandom(12 * MiB)  # more than one 8 MiB part
    handler = functools.partial(DjangoStorageHandler, s3, upload_to="backups/")
    with _parse(
        {"f": ("dump.bin", data, "application/octet-stream")}, HashingHandler, handler
    ) as form:
        f = form.files["f"]
        assert f.name == "backups/dump.bin"
        assert f.hashes["sha256"] == hashlib.sha256(data).hexdigest()
    assert s3.exists("backups/dump.bin")
    with s3.open("backups/dump.bin") as stored:
        assert stored.read() == data
    client = seaweed.client()
    assert client.list_multipart_uploads(Bucket=seaweed.bucket).get("Uploads", []) == []
    assert files_under(TEMP) == []


@pytest.mark.s3
def test_s3_failed_upload_leaves_no_object_and_no_multipart(s3: Any, seaweed: Seaweed) -> None:
    files = {
        "a": ("a.bin", os.urandom(1000), "application/octet-stream"),
        "b": ("b.bin", os.urandom(9 * MiB), "application/octet-stream"),
    }
    handler = functools.partial(DjangoStorageHandler, s3)
    with pytest.raises(FileTooLarge):
        _parse(files, handler, max_file_size=8 * MiB + 1)
    client = seaweed.client()
    listed = client.list_objects_v2(Bucket=seaweed.bucket, Prefix="django-tests/")
    assert listed.get("Contents", []) == []
    assert client.list_multipart_uploads(Bucket=seaweed.bucket).get("Uploads", []) == []


def test_a_failed_commit_leaves_no_temp_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # A file system without hard links (EPERM), or a disk error at the link.
    def refuse(self: Any, target: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("pathlib.Path.hardlink_to", refuse)
    with pytest.raises(OSError, match="not permitted"):
        _parse({"f": ("a.bin", b"a" * 1000, "application/octet-stream")}, DjangoStorageHandler)
    assert files_under(MEDIA) == []
