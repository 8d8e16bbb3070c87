"""The storage contract, run against every backend (LocalStorage, S3Storage on SeaweedFS).

A new backend passes by adding it to the ``storage`` fixture in conftest.py.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from spoolup import MalformedRequest, UploadError
from spoolup.storage import (
    InvalidKey,
    InvalidMetadata,
    LocalStorage,
    ObjectMeta,
    ObjectNotFound,
    ResumableStorage,
    Storage,
    StorageError,
)
from spoolup.storage.local import TEMP_SUFFIX, UPLOADS_DIR
from spoolup.storage.s3 import S3Storage

MiB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ at every offset (so a misplaced range shows)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += block[:-1] + bytes([counter % 256])
        counter += 1
    return bytes(out[:size])


def leftovers(storage: Storage) -> list[str]:
    """What an unfinished write could leave: temp files and uploads, or multipart uploads."""
    if isinstance(storage, LocalStorage):
        found = [
            str(path.relative_to(storage.root))
            for path in storage.root.rglob("*")
            if path.name.endswith(TEMP_SUFFIX)
        ]
        uploads = storage.root / UPLOADS_DIR
        if uploads.exists():
            found += [str(p) for p in uploads.iterdir()]
        return found
    assert isinstance(storage, S3Storage)
    response = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=storage.prefix)
    return [upload["Key"] for upload in response.get("Uploads", [])]


def big_size(storage: Storage) -> int:
    """A size that makes an S3 writer send several parts (and a tail)."""
    if isinstance(storage, S3Storage):
        return 2 * storage.part_size + 12345
    return 3 * MiB + 12345


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# -- writing and reading ------------------------------------------------------------------


def test_round_trip_bytes(storage: ResumableStorage) -> None:
    info = storage.write("a.txt", b"hello world")
    assert info.key == "a.txt"
    assert info.size == 11
    assert info.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert storage.read_bytes("a.txt") == b"hello world"
    assert storage.exists("a.txt")


def test_round_trip_empty_object(storage: ResumableStorage) -> None:
    info = storage.write("empty", b"")
    assert info.size == 0
    assert storage.read_bytes("empty") == b""
    assert storage.stat("empty").size == 0
    assert storage.read_bytes("empty", start=0, end=10) == b""


@pytest.mark.parametrize("chunk", [1, 1000, 65536, 3 * MiB])
def test_round_trip_iterable_any_chunking(storage: ResumableStorage, chunk: int) -> None:
    data = payload(big_size(storage) if chunk >= 65536 else 5000, seed=chunk)
    info = storage.write("deep/nested/key.bin", chunked(data, chunk))
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.read_bytes("deep/nested/key.bin") == data
    assert storage.stat("deep/nested/key.bin").sha256 == info.sha256
    assert leftovers(storage) == []


def test_round_trip_file_object(storage: ResumableStorage) -> None:
    data = payload(2 * MiB + 1)
    storage.write("from-file", io.BytesIO(data))
    assert storage.read_bytes("from-file") == data


def test_overwrite_replaces(storage: ResumableStorage) -> None:
    storage.write("k", b"first", meta=ObjectMeta(filename="one.txt"))
    storage.write("k", b"second!", meta=ObjectMeta(filename="two.txt"))
    assert storage.read_bytes("k") == b"second!"
    info = storage.stat("k")
    assert (info.size, info.filename) == (7, "two.txt")


def test_open_is_seekable_and_chunked(storage: ResumableStorage) -> None:
    data = payload(300_000)
    storage.write("seek", data)
    with storage.open("seek") as stream:
        assert stream.read(10) == data[:10]
        stream.seek(200_000)
        assert stream.read(5) == data[200_000:200_005]
        assert stream.tell() == 200_005
        stream.seek(0)
        assert stream.read() == data
    assert b"".join(storage.iter_bytes("seek", chunk_size=7777)) == data


# -- metadata ---------------------------------------------------------------------------


def test_metadata_round_trip(storage: ResumableStorage) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    storage.write(
        "meta",
        b"data",
        meta=ObjectMeta(
            filename='café 日本 %20 "q".txt',
            content_type="text/plain; charset=utf-8",
            metadata={"owner": "zoë", "field-name": "upload", "empty": ""},
        ),
    )
    info = storage.stat("meta")
    assert info.filename == 'café 日本 %20 "q".txt'
    assert info.content_type == "text/plain; charset=utf-8"
    assert info.size == 4
    assert info.sha256 == hashlib.sha256(b"data").hexdigest()
    # Empty values are dropped by every backend (S3 does not keep them).
    assert dict(info.metadata) == {"owner": "zoë", "field-name": "upload"}
    assert before <= info.created <= datetime.now(UTC) + timedelta(seconds=2)
    assert info.created.tzinfo is not None
    assert info.etag


def test_stat_without_metadata(storage: ResumableStorage) -> None:
    storage.write("plain", b"x")
    info = storage.stat("plain")
    assert info.filename is None
    assert dict(info.metadata) == {}


@pytest.mark.parametrize(
    "metadata",
    [{"Bad": "x"}, {"with space": "x"}, {"filename": "x"}, {"sha256": "x"}, {"a" * 65: "x"}],
)
def test_bad_metadata_names(storage: ResumableStorage, metadata: dict[str, str]) -> None:
    with pytest.raises(InvalidMetadata) as caught:
        storage.write("m", b"x", meta=ObjectMeta(metadata=metadata))
    assert caught.value.status == 400
    assert not storage.exists("m")


@pytest.mark.parametrize(
    ("content_type", "metadata"),
    [
        pytest.param("text/plain\r\nX-Evil: 1", None, id="type-crlf"),
        pytest.param("t\u00ebxt/plain", None, id="type-non-ascii"),
        pytest.param("text\x01/plain", None, id="type-control"),
        pytest.param("plain", None, id="type-no-subtype"),
        pytest.param(None, {"note": "a\r\nb"}, id="value-crlf"),
        pytest.param(None, {"note": "a\x00b"}, id="value-nul"),
    ],
)
def test_unservable_type_or_metadata_is_a_400(
    storage: ResumableStorage, content_type: str | None, metadata: dict[str, str] | None
) -> None:
    # Stored, such a value would make the object impossible to serve back in a header.
    meta = ObjectMeta(content_type=content_type, metadata=metadata or {})
    with pytest.raises(InvalidMetadata) as caught:
        storage.write("m", b"x", meta=meta)
    assert caught.value.status == 400
    assert not storage.exists("m")


def test_media_type_with_parameters_is_stored(storage: ResumableStorage) -> None:
    info = storage.write("m", b"x", meta=ObjectMeta(content_type="text/plain; charset=utf-8"))
    assert storage.stat("m").content_type == info.content_type == "text/plain; charset=utf-8"


def test_metadata_too_large_is_a_400(storage: ResumableStorage) -> None:
    with pytest.raises(InvalidMetadata, match="exceeds"):
        storage.write("m", b"x", meta=ObjectMeta(filename="日" * 300))
    assert not storage.exists("m")
    assert leftovers(storage) == []


# -- ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (0, 1),
        (5, 10),
        (99_999, None),
        (10, 10),
        (50_000, 200_000),
        (100_000, None),
        (150_000, 150_010),
        (0, 100_000),
    ],
)
def test_ranges(storage: ResumableStorage, start: int, end: int | None) -> None:
    data = payload(100_000)
    storage.write("r", data)
    expected = data[start:end]
    assert storage.read_bytes("r", start=start, end=end) == expected
    with storage.open("r", start=start, end=end) as stream:
        assert stream.read(3) == expected[:3]
        stream.seek(0)
        assert stream.read() == expected
        stream.seek(-1 if expected else 0, os.SEEK_END)
        assert stream.read() == expected[-1:]


def test_bad_ranges_are_programming_errors(storage: ResumableStorage) -> None:
    storage.write("r", b"abc")
    with pytest.raises(ValueError, match="range"):
        storage.open("r", start=-1)
    with pytest.raises(ValueError, match="range"):
        storage.open("r", start=2, end=1)


def test_range_of_a_missing_object(storage: ResumableStorage) -> None:
    for start, end in [(0, None), (1, 5), (3, 3)]:
        with pytest.raises(ObjectNotFound):
            storage.open("nope", start=start, end=end)


# -- listing and deleting ------------------------------------------------------------------


def test_listing_paginates_in_key_order(storage: ResumableStorage) -> None:
    keys = [f"list/item-{i:02d}" for i in range(7)] + ["list/sub/deeper", "list-other", "zzz"]
    for key in reversed(keys):
        storage.write(key, key.encode())
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = storage.list("list/", limit=3, token=token)
        pages += 1
        assert len(page.items) <= 3
        seen += [item.key for item in page.items]
        for item in page.items:
            assert item.size == len(item.key)
            assert item.created.tzinfo is not None
        token = page.next_token
        if token is None:
            break
    assert seen == sorted(keys[:8])
    assert pages == 3
    # SeaweedFS lists folder by folder ("list/..." before "list-other"), AWS by bytes:
    # the contract fixes the set and the order within one folder.
    assert sorted(i.key for i in storage.list("list").items) == sorted([*keys[:8], "list-other"])
    assert [i.key for i in storage.list("list/item-0").items] == keys[:7]
    assert storage.list("absent/").items == []
    assert storage.list("absent/").next_token is None


def test_list_with_metadata(storage: ResumableStorage) -> None:
    storage.write("lm/a", b"1", meta=ObjectMeta(filename="a.txt", content_type="text/plain"))
    storage.write("lm/b", b"22", meta=ObjectMeta(filename="b.txt"))
    page = storage.list_with_metadata("lm/")
    assert [(i.key, i.filename, i.size) for i in page.items] == [
        ("lm/a", "a.txt", 1),
        ("lm/b", "b.txt", 2),
    ]
    assert page.items[0].sha256 == hashlib.sha256(b"1").hexdigest()


def test_list_limit_must_be_positive(storage: ResumableStorage) -> None:
    with pytest.raises(ValueError, match="limit"):
        storage.list(limit=0)


def test_delete(storage: ResumableStorage) -> None:
    storage.write("d/x", b"x", meta=ObjectMeta(filename="x"))
    storage.delete("d/x")
    assert not storage.exists("d/x")
    with pytest.raises(ObjectNotFound) as caught:
        storage.stat("d/x")
    assert caught.value.status == 404
    with pytest.raises(ObjectNotFound):
        storage.open("d/x")
    storage.delete("d/x")  # missing: not an error
    assert storage.list("d/").items == []


# -- keys -------------------------------------------------------------------------------


BAD_KEYS = [
    "",
    "/etc/passwd",
    "../up",
    "a/../../up",
    "a/./b",
    "a//b",
    "a/",
    ".hidden",
    "a/.meta",
    "back\\slash",
    "nul\x00byte",
    "new\nline",
    "del\x7f",
    "c1\x85",
    "x" * 1025,
    "a/" + "y" * 201,
    "\udcff",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_everywhere(storage: ResumableStorage, key: str) -> None:
    for call in (
        lambda: storage.write(key, b"x"),
        lambda: storage.open(key),
        lambda: storage.stat(key),
        lambda: storage.delete(key),
        lambda: storage.begin_multipart(key),
    ):
        with pytest.raises(InvalidKey) as caught:
            call()
        assert isinstance(caught.value, MalformedRequest)
        assert isinstance(caught.value, UploadError)
        assert caught.value.status == 400
    assert leftovers(storage) == []


@pytest.mark.parametrize("key", ["a", "a.b/c-d_e", "日本/ü", "a b/c", "x" * 200, "a:b@c!"])
def test_good_keys(storage: ResumableStorage, key: str) -> None:
    storage.write(key, b"ok")
    assert storage.read_bytes(key) == b"ok"
    assert [i.key for i in storage.list(key).items] == [key]


# -- atomicity ------------------------------------------------------------------------------


def test_nothing_visible_before_commit(storage: ResumableStorage) -> None:
    data = payload(big_size(storage))
    with storage.open_writer("pending", meta=ObjectMeta(filename="p")) as writer:
        writer.write(data)
        assert not storage.exists("pending")
        assert storage.list("pending").items == []
        info = writer.commit()
    assert info.size == len(data)
    assert storage.read_bytes("pending") == data


def test_overwrite_keeps_old_object_until_commit(storage: ResumableStorage) -> None:
    storage.write("ow", b"old")
    with storage.open_writer("ow") as writer:
        writer.write(payload(big_size(storage)))
        assert storage.read_bytes("ow") == b"old"
        writer.abort()
    assert storage.read_bytes("ow") == b"old"
    assert leftovers(storage) == []


def test_cut_source_leaves_nothing(storage: ResumableStorage) -> None:
    data = payload(big_size(storage))

    def cut() -> Iterator[bytes]:
        yield data[: len(data) - 1000]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        storage.write("cut", cut(), meta=ObjectMeta(filename="cut.bin"))
    assert not storage.exists("cut")
    assert storage.list("cut").items == []
    assert leftovers(storage) == []


def test_leaving_the_block_without_commit_aborts(storage: ResumableStorage) -> None:
    with storage.open_writer("no-commit") as writer:
        writer.write(payload(big_size(storage)))
    assert writer.done
    assert not storage.exists("no-commit")
    assert leftovers(storage) == []


def test_writer_after_done(storage: ResumableStorage) -> None:
    writer = storage.open_writer("done")
    writer.write(b"x")
    writer.write(b"")
    writer.commit()
    writer.abort()  # after commit: nothing happens
    assert storage.read_bytes("done") == b"x"
    with pytest.raises(StorageError, match="after commit"):
        writer.write(b"y")
    with pytest.raises(StorageError, match="after commit"):
        writer.commit()
    aborted = storage.open_writer("aborted")
    aborted.abort()
    aborted.abort()
    with pytest.raises(StorageError):
        aborted.commit()
    assert not storage.exists("aborted")


# -- resumable uploads ------------------------------------------------------------------------


def test_multipart_round_trip(storage: ResumableStorage) -> None:
    first = payload(max(storage.min_part_size, 1000), seed=1)
    second = payload(max(storage.min_part_size, 1000), seed=2)
    last = b"tail"
    upload_id = storage.begin_multipart(
        "mp/obj",
        meta=ObjectMeta(filename="résumé.pdf", content_type="application/pdf", metadata={"n": "1"}),
    )
    assert not storage.exists("mp/obj")
    assert storage.list_parts("mp/obj", upload_id) == []
    storage.upload_part("mp/obj", upload_id, 1, first)
    storage.upload_part("mp/obj", upload_id, 2, second)
    storage.upload_part("mp/obj", upload_id, 3, last)
    parts = storage.list_parts("mp/obj", upload_id)
    assert [(p.number, p.size) for p in parts] == [(1, len(first)), (2, len(second)), (3, 4)]
    assert not storage.exists("mp/obj")
    digest = hashlib.sha256(first + second + last).hexdigest()
    info = storage.complete_multipart("mp/obj", upload_id, sha256=digest)
    assert info.size == len(first) + len(second) + 4
    assert storage.read_bytes("mp/obj") == first + second + last
    stat = storage.stat("mp/obj")
    assert (stat.filename, stat.content_type, stat.sha256) == (
        "résumé.pdf",
        "application/pdf",
        digest,
    )
    assert dict(stat.metadata) == {"n": "1"}
    assert leftovers(storage) == []


def test_multipart_with_explicit_parts(storage: ResumableStorage) -> None:
    upload_id = storage.begin_multipart("mp2")
    storage.upload_part("mp2", upload_id, 1, b"to be replaced")
    # Sent again (a retry): the parts returned by upload_part are the ones to complete
    # with (SeaweedFS lists both uploads of a part number, in no fixed order).
    part = storage.upload_part("mp2", upload_id, 1, b"only part")
    storage.complete_multipart("mp2", upload_id, [part])
    assert storage.read_bytes("mp2") == b"only part"
    assert storage.stat("mp2").sha256 is None


def test_multipart_abort(storage: ResumableStorage) -> None:
    upload_id = storage.begin_multipart("mp3")
    storage.upload_part("mp3", upload_id, 1, b"x" * 100)
    storage.abort_multipart("mp3", upload_id)
    storage.abort_multipart("mp3", upload_id)  # again: not an error
    assert not storage.exists("mp3")
    assert leftovers(storage) == []
    with pytest.raises(ObjectNotFound):
        storage.list_parts("mp3", upload_id)


def test_multipart_unknown_or_bad_id(storage: ResumableStorage) -> None:
    upload_id = storage.begin_multipart("mp4")
    with pytest.raises(ObjectNotFound):
        storage.list_parts("other-key", upload_id if isinstance(storage, LocalStorage) else "x")
    for bad in ["", "a\nb"]:
        with pytest.raises(InvalidKey):
            storage.upload_part("mp4", bad, 1, b"x")
    storage.abort_multipart("mp4", upload_id)


# -- async ----------------------------------------------------------------------------------


async def test_async_twins(storage: ResumableStorage) -> None:
    data = payload(big_size(storage))

    async def source() -> AsyncIterator[bytes]:
        for chunk in chunked(data, 300_000):
            yield chunk

    info = await storage.awrite("async/a", source(), meta=ObjectMeta(filename="a.bin"))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert (await storage.astat("async/a")).filename == "a.bin"
    assert await storage.aread_bytes("async/a", start=10, end=20) == data[10:20]
    assert b"".join([c async for c in storage.aiter_bytes("async/a")]) == data
    stream = await storage.aopen("async/a", start=5)
    with stream:
        assert stream.read(3) == data[5:8]
    await storage.awrite("async/b", b"bytes")
    await storage.awrite("async/c", [b"it", b"erable"])
    assert await storage.aread_bytes("async/c") == b"iterable"
    page = await storage.alist("async/")
    assert [i.key for i in page.items] == ["async/a", "async/b", "async/c"]
    page = await storage.alist_with_metadata("async/", limit=1)
    assert page.items[0].filename == "a.bin"
    assert page.next_token is not None
    assert await storage.aexists("async/b")
    await storage.adelete("async/b")
    assert not await storage.aexists("async/b")


async def test_async_writer_abort_on_error(storage: ResumableStorage) -> None:
    async def cut() -> AsyncIterator[bytes]:
        yield payload(big_size(storage))
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await storage.awrite("async/cut", cut())
    assert not await storage.aexists("async/cut")
    assert leftovers(storage) == []
    writer = await storage.aopen_writer("async/small")
    async with writer:
        for _ in range(3):
            await writer.write(b"ab")
        info = await writer.commit()
    assert info.size == 6
    assert await storage.aread_bytes("async/small") == b"ababab"


def test_mutable_buffers_are_copied_and_huge_chunks_split(storage: ResumableStorage) -> None:
    data = payload(big_size(storage) + (storage.min_part_size * 2), seed=11)
    buffer = bytearray(data)
    with storage.open_writer("huge-chunk") as writer:
        writer.write(buffer)
        buffer[:] = b"\0" * len(buffer)  # the caller reuses its buffer at once
        writer.write(memoryview(b"end"))
        info = writer.commit()
    assert info.sha256 == hashlib.sha256(data + b"end").hexdigest()
    assert storage.read_bytes("huge-chunk") == data + b"end"


def test_programming_errors(storage: ResumableStorage) -> None:
    with pytest.raises(InvalidKey, match="must be a str"):
        storage.write(42, b"x")  # type: ignore[arg-type]
    with pytest.raises(InvalidMetadata, match="must be a str"):
        storage.write("k", b"x", meta=ObjectMeta(metadata={"n": 1}))  # type: ignore[dict-item]
    storage.write("k", b"abc")
    with storage.open("k", start=1) as stream, pytest.raises(ValueError, match="negative"):
        stream.seek(-5)


def test_list_with_metadata_skips_objects_deleted_meanwhile(
    storage: ResumableStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.write("gone/a", b"1")
    storage.write("gone/b", b"2")
    real_stat = storage.stat

    def stat(key: str) -> object:
        if key == "gone/a":
            raise ObjectNotFound(key)
        return real_stat(key)

    monkeypatch.setattr(storage, "stat", stat)
    assert [i.key for i in storage.list_with_metadata("gone/").items] == ["gone/b"]


async def test_check(storage: ResumableStorage) -> None:
    storage.check()
    await storage.acheck()


# -- moving ---------------------------------------------------------------------------------


@pytest.mark.parametrize("default", [False, True], ids=["backend", "default"])
def test_move_replaces_the_metadata_given(storage: ResumableStorage, default: bool) -> None:
    data = payload(big_size(storage), seed=7)
    storage.write(
        "tus/u1/data",
        data,
        meta=ObjectMeta(filename="../raw name", content_type="a/b", metadata={"n": "1"}),
    )
    digest = hashlib.sha256(data).hexdigest()
    move = Storage.move.__get__(storage) if default else storage.move
    new = ObjectMeta(filename="raw name", content_type="c/d", metadata={"m": "2"})
    info = move("tus/u1/data", "files/f1", meta=new, sha256=digest)
    assert (info.key, info.size, info.sha256) == ("files/f1", len(data), digest)
    stat = storage.stat("files/f1")
    assert (stat.filename, stat.content_type, stat.sha256) == ("raw name", "c/d", digest)
    assert dict(stat.metadata) == {"m": "2"}
    assert storage.read_bytes("files/f1") == data
    assert not storage.exists("tus/u1/data")
    assert [i.key for i in storage.list("tus/").items] == []
    assert leftovers(storage) == []


def test_move_without_meta_keeps_it_and_replaces_the_target(storage: ResumableStorage) -> None:
    meta = ObjectMeta(filename="n.txt", content_type="text/plain", metadata={"k": "v"})
    storage.write("a/src", b"new bytes", meta=meta)
    storage.write("b/dest", b"old")
    before = datetime.now(UTC) - timedelta(seconds=5)
    info = storage.move("a/src", "b/dest")
    assert info.created >= before
    stat = storage.stat("b/dest")
    assert stat.meta == meta
    assert stat.sha256 == hashlib.sha256(b"new bytes").hexdigest()
    assert storage.read_bytes("b/dest") == b"new bytes"
    assert not storage.exists("a/src")


def test_move_onto_itself_only_changes_metadata(storage: ResumableStorage) -> None:
    storage.write("same", b"abc", meta=ObjectMeta(filename="x"))
    info = storage.move("same", "same", meta=ObjectMeta(filename="y"))
    assert info.filename == "y"
    assert storage.read_bytes("same") == b"abc"


def test_move_of_a_multipart_object(storage: ResumableStorage) -> None:
    # The tus path: parts completed under the upload's key, hashed, moved to the file's.
    first = payload(max(storage.min_part_size, 1000), seed=3)
    upload_id = storage.begin_multipart("tus/u2/data", meta=ObjectMeta(filename="raw"))
    storage.upload_part("tus/u2/data", upload_id, 1, first)
    storage.upload_part("tus/u2/data", upload_id, 2, b"end")
    storage.complete_multipart("tus/u2/data", upload_id)
    digest = hashlib.sha256(first + b"end").hexdigest()
    storage.move("tus/u2/data", "files/f2", meta=ObjectMeta(filename="safe"), sha256=digest)
    stat = storage.stat("files/f2")
    assert (stat.filename, stat.sha256, stat.size) == ("safe", digest, len(first) + 3)
    assert storage.read_bytes("files/f2") == first + b"end"
    assert not storage.exists("tus/u2/data")


def test_move_errors_leave_the_source(storage: ResumableStorage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.move("missing", "elsewhere")
    storage.write("kept", b"1")
    with pytest.raises(InvalidKey):
        storage.move("kept", "../out")
    with pytest.raises(InvalidMetadata):
        storage.move("kept", "other", meta=ObjectMeta(metadata={"Bad Name": "x"}))
    assert storage.read_bytes("kept") == b"1"
    assert not storage.exists("other")


async def test_amove(storage: ResumableStorage) -> None:
    await storage.awrite("x/1", b"data")
    info = await storage.amove("x/1", "y/1", meta=ObjectMeta(content_type="text/plain"))
    assert info.content_type == "text/plain"
    assert await storage.aread_bytes("y/1") == b"data"
    assert not await storage.aexists("x/1")
