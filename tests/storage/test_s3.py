"""S3Storage beyond the shared suite, against a real SeaweedFS on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from spoolup.storage import ObjectMeta, ObjectNotFound, StorageError
from spoolup.storage import s3 as s3_mod
from spoolup.storage.s3 import S3Storage
from tests.seaweed import Seaweed, free_ports

pytestmark = pytest.mark.s3

MiB = 1024 * 1024


def uploads(storage: S3Storage) -> list[str]:
    response = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=storage.prefix)
    return [u["Key"] for u in response.get("Uploads", [])]


def bucket_keys(storage: S3Storage) -> list[str]:
    response = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=storage.prefix)
    return [entry["Key"] for entry in response.get("Contents", [])]


def test_s3storage_is_imported_on_first_use() -> None:
    import spoolup.storage

    assert spoolup.storage.S3Storage is S3Storage
    with pytest.raises(AttributeError, match="nothing"):
        spoolup.storage.nothing  # noqa: B018


def test_constructor_checks(seaweed: Seaweed, s3_client: Any) -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        S3Storage(seaweed.bucket, part_size=MiB, client=s3_client)
    with pytest.raises(ValueError, match="concurrency"):
        S3Storage(seaweed.bucket, concurrency=0, client=s3_client)
    storage = S3Storage(seaweed.bucket, "/a/b/", client=s3_client)
    assert storage.prefix == "a/b/"
    assert repr(storage) == f"S3Storage({seaweed.bucket!r}, 'a/b/')"
    assert S3Storage(seaweed.bucket, client=s3_client).prefix == ""


def test_keys_live_under_the_prefix(s3_storage: S3Storage) -> None:
    s3_storage.write("x/y", b"1")
    assert bucket_keys(s3_storage) == [f"{s3_storage.prefix}x/y"]
    # An object written by another tool under a name that is not a valid key is skipped.
    s3_storage.client.put_object(
        Bucket=s3_storage.bucket, Key=f"{s3_storage.prefix}.hidden", Body=b"z"
    )
    assert [i.key for i in s3_storage.list().items] == ["x/y"]


def test_small_object_is_one_request_with_sha256_in_metadata(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = s3_storage.client.create_multipart_upload

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs["Key"])
        return real(**kwargs)

    monkeypatch.setattr(s3_storage.client, "create_multipart_upload", spy)
    data = b"s" * (s3_storage.part_size - 1)
    info = s3_storage.write("small", [data], meta=ObjectMeta(filename="s.bin"))
    assert calls == []
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key=f"{s3_storage.prefix}small")
    assert head["Metadata"]["sha256"] == info.sha256 == hashlib.sha256(data).hexdigest()
    assert head["Metadata"]["filename"] == "s.bin"


def test_multipart_object_sha256_is_a_tag(s3_storage: S3Storage) -> None:
    data = b"m" * (s3_storage.part_size + 10)
    info = s3_storage.write("multi", [data], meta=ObjectMeta(filename="naïve.bin"))
    key = f"{s3_storage.prefix}multi"
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key=key)
    assert "sha256" not in head["Metadata"]
    assert head["Metadata"]["filename"] == "na%C3%AFve.bin"  # ASCII on the wire
    tags = s3_storage.client.get_object_tagging(Bucket=s3_storage.bucket, Key=key)["TagSet"]
    assert tags == [{"Key": "sha256", "Value": hashlib.sha256(data).hexdigest()}]
    stat = s3_storage.stat("multi")
    assert stat.sha256 == info.sha256
    assert stat.filename == "naïve.bin"


def test_endpoint_without_tagging_keeps_the_object(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_implemented(**kwargs: Any) -> Any:
        error = {"Error": {"Code": "NotImplemented", "Message": "no tagging here"}}
        raise ClientError(error, "PutObjectTagging")  # type: ignore[arg-type]

    monkeypatch.setattr(s3_storage.client, "put_object_tagging", not_implemented)
    data = b"t" * (s3_storage.part_size + 1)
    info = s3_storage.write("untagged", [data])
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert s3_storage.stat("untagged").sha256 is None
    assert s3_storage.read_bytes("untagged") == data


def test_failed_part_aborts_the_upload(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = s3_storage.client.upload_part

    def fail_second(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            error = {"Error": {"Code": "InternalError", "Message": "disk on fire"}}
            raise ClientError(error, "UploadPart")  # type: ignore[arg-type]
        return real(**kwargs)

    monkeypatch.setattr(s3_storage.client, "upload_part", fail_second)
    chunk = b"f" * MiB
    with pytest.raises(StorageError, match="disk on fire"):
        s3_storage.write("failed", (chunk for _ in range(5 * 5)))
    assert uploads(s3_storage) == []
    assert bucket_keys(s3_storage) == []


def test_cut_request_aborts_multipart(s3_storage: S3Storage) -> None:
    started = threading.Event()

    def source() -> Any:
        for _ in range(3 * 5):
            yield b"c" * MiB
        started.set()
        assert uploads(s3_storage) == [f"{s3_storage.prefix}cut"]  # in progress
        raise ConnectionResetError("the client left")

    with pytest.raises(ConnectionResetError):
        s3_storage.write("cut", source())
    assert started.is_set()
    assert uploads(s3_storage) == []
    assert bucket_keys(s3_storage) == []


def test_parts_in_flight_are_bounded(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = s3_storage.client.upload_part
    lock = threading.Lock()
    in_flight = 0
    peak = 0

    def slow(**kwargs: Any) -> Any:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        try:
            return real(**kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(s3_storage.client, "upload_part", slow)
    data = bytes(range(256)) * (6 * s3_storage.part_size // 256) + b"end"
    info = s3_storage.write("bounded", (data[i : i + MiB] for i in range(0, len(data), MiB)))
    assert peak == s3_storage.concurrency == 2
    assert s3_storage.read_bytes("bounded") == data
    assert info.size == len(data)


def test_too_many_parts(s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_mod, "MAX_PARTS", 2)
    with pytest.raises(StorageError, match="2 parts"):
        s3_storage.write("many", (b"p" * MiB for _ in range(16)))
    assert uploads(s3_storage) == []
    with pytest.raises(ValueError, match="part numbers"):
        s3_storage.upload_part("x", "id", 3, b"")


def test_parts_grow_so_that_large_objects_fit_in_the_part_count(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scaled down: S3's 10,000 parts of a fixed 8 MiB end every object at 78 GiB.
    monkeypatch.setattr(s3_mod, "MAX_PARTS", 3)
    monkeypatch.setattr(s3_mod, "PARTS_PER_SIZE", 1)
    sent: list[int] = []
    real = s3_storage.upload_part

    def count(key: str, upload_id: str, number: int, data: bytes | bytearray) -> Any:
        sent.append(len(data))
        return real(key, upload_id, number, data)

    monkeypatch.setattr(s3_storage, "upload_part", count)
    part = s3_storage.part_size
    data = os.urandom(5 * part)  # more than 3 parts of part_size
    info = s3_storage.write("grown", (data[i : i + MiB] for i in range(0, len(data), MiB)))
    assert sent == [part, 2 * part, 2 * part]
    assert info.size == len(data)
    assert s3_storage.read_bytes("grown") == data
    assert [s3_storage.part_size_of(n) for n in (1, 2, 3, 20)] == [
        part,
        2 * part,
        4 * part,
        5 * 1024 * MiB,
    ]


def test_range_past_the_end_is_empty(s3_storage: S3Storage) -> None:
    s3_storage.write("r", b"0123456789")
    assert s3_storage.read_bytes("r", start=10) == b""
    assert s3_storage.read_bytes("r", start=50, end=60) == b""
    assert s3_storage.read_bytes("r", start=8, end=100) == b"89"


def test_reader_seeks_with_new_ranged_requests(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    s3_storage.write("seek", data)
    ranges: list[str | None] = []
    real = s3_storage.client.get_object

    def spy(**kwargs: Any) -> Any:
        ranges.append(kwargs.get("Range"))
        return real(**kwargs)

    monkeypatch.setattr(s3_storage.client, "get_object", spy)
    with s3_storage.open("seek", start=1000, end=900_000) as stream:
        assert stream.read(10) == data[1000:1010]
        stream.seek(500_000)
        assert stream.read(10) == data[501_000:501_010]
    assert ranges == ["bytes=1000-899999", "bytes=501000-899999"]


def test_object_shorter_than_announced(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_storage.write("short", b"abc")
    real = s3_storage.client.get_object

    def lying(**kwargs: Any) -> Any:
        response = real(**kwargs)
        response["ContentLength"] = 10
        return response

    monkeypatch.setattr(s3_storage.client, "get_object", lying)
    with s3_storage.open("short") as stream, pytest.raises(StorageError, match="ended early"):
        stream.read()


def test_unknown_upload(s3_storage: S3Storage) -> None:
    with pytest.raises(ObjectNotFound):
        s3_storage.list_parts("k", "no-such-upload")
    s3_storage.abort_multipart("k", "no-such-upload")


def test_wrong_credentials_give_a_clear_error(seaweed: Seaweed) -> None:
    client = seaweed.client(secret_key="wrong-secret")
    storage = S3Storage(seaweed.bucket, "creds", client=client)
    with pytest.raises(StorageError, match="SignatureDoesNotMatch") as caught:
        storage.write("x", b"data")
    assert "AWS_SECRET_ACCESS_KEY" in caught.value.message
    with pytest.raises(StorageError, match="403"):
        storage.check()
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID") as stat_error:
        storage.stat("x")
    assert not isinstance(stat_error.value, ObjectNotFound)
    with pytest.raises(StorageError):
        storage.write("big", [b"b" * (6 * MiB)])


def test_unreachable_endpoint(seaweed: Seaweed) -> None:
    (port,) = free_ports(1)
    session = boto3.session.Session(
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name=seaweed.region,
    )
    config = Config(connect_timeout=0.5, retries={"mode": "standard", "max_attempts": 1})
    client = session.client("s3", endpoint_url=f"http://127.0.0.1:{port}", config=config)
    storage = S3Storage(seaweed.bucket, client=client)
    with pytest.raises(StorageError, match="Could not connect"):
        storage.stat("x")


def test_configured_from_the_standard_environment(
    seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    storage = S3Storage(seaweed.bucket, "from-env")
    try:
        storage.write("hello", b"from the environment")
        assert storage.read_bytes("hello") == b"from the environment"
    finally:
        storage.delete("hello")


def test_check_a_missing_bucket(seaweed: Seaweed, s3_client: Any) -> None:
    with pytest.raises(StorageError, match="checking the bucket 'no-such-bucket'"):
        S3Storage("no-such-bucket", client=s3_client).check()


def test_move_of_a_large_object_copies_in_parts(s3_storage: S3Storage) -> None:
    # Objects over max_copy_size (5 GiB on S3) are moved by UploadPartCopy, server-side.
    s3_storage.max_copy_size = 6 * MiB
    s3_storage.copy_part_size = 5 * MiB
    data = bytes(range(256)) * (12 * MiB // 256) + b"tail"
    s3_storage.write("tus/big/data", data, meta=ObjectMeta(filename="raw"))
    digest = hashlib.sha256(data).hexdigest()
    calls: list[str] = []
    real = s3_storage.client.upload_part_copy

    def counting(**kw: Any) -> Any:
        calls.append(kw["CopySourceRange"])
        return real(**kw)

    s3_storage.client.upload_part_copy = counting
    try:
        info = s3_storage.move(
            "tus/big/data", "files/big", meta=ObjectMeta(filename="big.bin"), sha256=digest
        )
    finally:
        del s3_storage.client.upload_part_copy
    assert calls == [
        f"bytes=0-{5 * MiB - 1}",
        f"bytes={5 * MiB}-{10 * MiB - 1}",
        f"bytes={10 * MiB}-{len(data) - 1}",
    ]
    assert (info.size, info.sha256, info.filename) == (len(data), digest, "big.bin")
    assert s3_storage.read_bytes("files/big") == data
    assert not s3_storage.exists("tus/big/data")
    assert uploads(s3_storage) == []


def _untagged_multipart(s3_storage: S3Storage, key: str, data: bytes) -> None:
    # As a tus upload completed in place whose digest was not known yet.
    full = f"{s3_storage.prefix}{key}"
    client, bucket = s3_storage.client, s3_storage.bucket
    upload = client.create_multipart_upload(
        Bucket=bucket, Key=full, ContentType="image/png", Metadata={"filename": "a.png"}
    )["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key=full, UploadId=upload, PartNumber=1, Body=data)[
        "ETag"
    ]
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=full,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )


def test_moving_onto_itself_to_record_a_digest_copies_nothing(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"d" * 1000
    digest = hashlib.sha256(data).hexdigest()
    _untagged_multipart(s3_storage, "files/x", data)
    assert s3_storage.stat("files/x").sha256 is None

    def no_copy(**kwargs: Any) -> Any:
        raise AssertionError("copied")

    monkeypatch.setattr(s3_storage.client, "copy_object", no_copy)
    monkeypatch.setattr(s3_storage.client, "upload_part_copy", no_copy)
    meta = ObjectMeta(filename="a.png", content_type="image/png")
    info = s3_storage.move("files/x", "files/x", meta=meta, sha256=digest)
    assert (info.sha256, info.filename, info.size) == (digest, "a.png", len(data))
    stat = s3_storage.stat("files/x")
    assert (stat.sha256, stat.filename, stat.content_type) == (digest, "a.png", "image/png")
    assert s3_storage.read_bytes("files/x") == data


def test_moving_onto_itself_without_tagging_copies(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_implemented(**kwargs: Any) -> Any:
        error = {"Error": {"Code": "NotImplemented", "Message": "no tagging here"}}
        raise ClientError(error, "PutObjectTagging")  # type: ignore[arg-type]

    data = b"e" * 1000
    digest = hashlib.sha256(data).hexdigest()
    _untagged_multipart(s3_storage, "files/y", data)
    monkeypatch.setattr(s3_storage.client, "put_object_tagging", not_implemented)
    meta = ObjectMeta(filename="a.png", content_type="image/png")
    info = s3_storage.move("files/y", "files/y", meta=meta, sha256=digest)
    assert info.sha256 == s3_storage.stat("files/y").sha256 == digest  # in its metadata
    assert s3_storage.read_bytes("files/y") == data


def test_move_in_parts_aborts_on_failure(s3_storage: S3Storage) -> None:
    s3_storage.max_copy_size = 1
    s3_storage.write("src", b"x" * 100)

    def broken(**kw: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "no"}}, "UploadPartCopy")

    s3_storage.client.upload_part_copy = broken
    try:
        with pytest.raises(StorageError, match="InternalError"):
            s3_storage.move("src", "dest")
    finally:
        del s3_storage.client.upload_part_copy
    assert uploads(s3_storage) == []
    assert s3_storage.exists("src")
    assert not s3_storage.exists("dest")
