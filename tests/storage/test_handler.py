"""StorageHandler: file parts stream from the request into storage, and back out."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import spoolup
from spoolup import FileTooLarge, MalformedRequest, UnsupportedMediaType
from spoolup.files import FileInfo
from spoolup.handlers import ContentTypeHandler, SizeLimitHandler, SkipFile, UploadHandler
from spoolup.storage import (
    InvalidKey,
    LocalStorage,
    ObjectNotFound,
    Storage,
    StorageHandler,
    StoredFile,
    random_key,
)
from spoolup.storage.s3 import S3Storage
from tests.storage.test_backend_suite import big_size, leftovers, payload

BOUNDARY = "storageBoundary7"
CT = f"multipart/form-data; boundary={BOUNDARY}"


def body(*parts: tuple[str, str | None, bytes, str | None]) -> bytes:
    out = b""
    for name, filename, data, ctype in parts:
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        if filename is not None:
            out += f'; filename="{filename}"'.encode()
        out += b"\r\n"
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def chunks(data: bytes, size: int = 100_000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def stored_keys(storage: Storage) -> list[str]:
    return [item.key for item in storage.list().items]


def test_files_stream_into_storage(storage: Storage) -> None:
    big = payload(big_size(storage), seed=3)
    request = body(
        ("title", None, b"holiday", None),
        ("upload", "photo one.jpg", big, "image/jpeg"),
        ("upload", "notes.txt", b"small", "text/plain"),
    )
    handlers = [lambda: StorageHandler(storage)]
    with spoolup.parse_form(chunks(request), CT, handlers=handlers) as form:
        assert form.fields["title"] == "holiday"
        first, second = form.files.getlist("upload")
        assert isinstance(first, StoredFile)
        assert isinstance(second, StoredFile)
        assert re.fullmatch(r"[0-9a-f]{32}", first.key)
        assert first.storage is storage
        assert first.hashes["sha256"] == hashlib.sha256(big).hexdigest()
        assert first.object_info.sha256 == first.hashes["sha256"]
        assert (first.size, first.filename, first.content_type) == (
            len(big),
            "photo one.jpg",
            "image/jpeg",
        )
        assert first.path is None
        assert not first.in_memory
        assert first.read(5) == big[:5]
        first.seek(1000)
        assert first.read(10) == big[1000:1010]
        assert b"".join(first.chunks(1 << 20)) == big
        assert second.read() == b"small"
        stat = storage.stat(first.key)
        assert (stat.filename, stat.content_type, stat.size) == (
            "photo one.jpg",
            "image/jpeg",
            len(big),
        )
        assert stat.sha256 == first.hashes["sha256"]
    assert sorted(stored_keys(storage)) == sorted([first.key, second.key])  # kept after close
    assert leftovers(storage) == []


async def test_async_driver(storage: Storage) -> None:
    data = payload(big_size(storage), seed=4)
    request = body(("f", "a.bin", data, "application/octet-stream"))

    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks(request, 65536):
            yield chunk

    form = await spoolup.aparse_form(source(), CT, handlers=[lambda: StorageHandler(storage)])
    try:
        file = form.files["f"]
        assert isinstance(file, StoredFile)
        assert await file.aread() == data
        assert file.hashes["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        form.close()


def test_raw_body_through_receive_file(local_storage: LocalStorage) -> None:
    file = spoolup.receive_file(
        chunks(b"raw body" * 1000, 333),
        filename="raw.bin",
        content_type="application/octet-stream",
        handlers=[StorageHandler(local_storage, lambda info: f"raw/{info.filename}")],
    )
    assert isinstance(file, StoredFile)
    with file:
        assert file.key == "raw/raw.bin"
        assert file.read() == b"raw body" * 1000
    assert local_storage.read_bytes("raw/raw.bin") == b"raw body" * 1000


def test_key_is_never_the_client_filename(local_storage: LocalStorage) -> None:
    request = body(("f", "../../etc/passwd", b"evil", None))
    with spoolup.parse_form(request, CT, handlers=[StorageHandler(local_storage)]) as form:
        file = form.files["f"]
        assert isinstance(file, StoredFile)
        assert file.filename == "passwd"
        assert "passwd" not in file.key
        assert local_storage.stat(file.key).filename == "passwd"
    assert len(random_key(FileInfo("f", "x")) + random_key(FileInfo("f", "x"))) == 64


def test_key_func_output_is_checked(local_storage: LocalStorage) -> None:
    request = body(("f", "a.txt", b"data", None))
    handler = StorageHandler(local_storage, key_func=lambda info: f"../{info.filename}")
    with pytest.raises(InvalidKey) as caught:
        spoolup.parse_form(request, CT, handlers=[handler])
    assert caught.value.status == 400
    assert stored_keys(local_storage) == []


def test_metadata_func(local_storage: LocalStorage) -> None:
    request = body(("avatar", "me.png", b"png?", "image/png"))
    handler = StorageHandler(
        local_storage,
        key_func=lambda info: f"users/42/{info.field_name}",
        metadata_func=lambda info: {"field": info.field_name, "user": "42"},
    )
    with spoolup.parse_form(request, CT, handlers=[handler]) as form:
        assert isinstance(form.files["avatar"], StoredFile)
    info = local_storage.stat("users/42/avatar")
    assert dict(info.metadata) == {"field": "avatar", "user": "42"}


def test_size_limit_midway_aborts_and_removes_earlier_files(storage: Storage) -> None:
    big = payload(big_size(storage), seed=5)
    request = body(("first", "ok.txt", b"fine", None), ("second", "big.bin", big, None))
    handlers = [SizeLimitHandler(len(big) - 100), StorageHandler(storage)]
    with pytest.raises(FileTooLarge):
        spoolup.parse_form(chunks(request), CT, handlers=handlers)
    assert stored_keys(storage) == []  # the first file is deleted too
    assert leftovers(storage) == []


def test_keep_on_error_keeps_earlier_files(local_storage: LocalStorage) -> None:
    request = body(("first", "ok.txt", b"fine", None), ("second", "big.bin", b"x" * 5000, None))
    handlers = [SizeLimitHandler(1000), StorageHandler(local_storage, keep_on_error=True)]
    with pytest.raises(FileTooLarge):
        spoolup.parse_form(chunks(request, 100), CT, handlers=handlers)
    (kept,) = stored_keys(local_storage)
    assert local_storage.read_bytes(kept) == b"fine"
    assert leftovers(local_storage) == []


def test_content_check_refusal_aborts(storage: Storage) -> None:
    request = body(("f", "fake.png", b"MZ" + payload(big_size(storage)), "image/png"))
    handlers = [ContentTypeHandler(["image/png"]), StorageHandler(storage)]
    with pytest.raises(UnsupportedMediaType):
        spoolup.parse_form(chunks(request), CT, handlers=handlers)
    assert stored_keys(storage) == []
    assert leftovers(storage) == []


def test_cut_request_aborts(storage: Storage) -> None:
    request = body(("f", "a.bin", payload(big_size(storage)), None))

    def cut() -> Iterator[bytes]:
        yield from chunks(request[: len(request) - 5000])
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        spoolup.parse_form(cut(), CT, handlers=[StorageHandler(storage)])
    assert stored_keys(storage) == []
    assert leftovers(storage) == []


def test_truncated_body_aborts(local_storage: LocalStorage) -> None:
    request = body(("f", "a.bin", b"x" * 100_000, None))
    with pytest.raises(MalformedRequest):
        spoolup.parse_form(request[:50_000], CT, handlers=[StorageHandler(local_storage)])
    assert stored_keys(local_storage) == []
    assert leftovers(local_storage) == []


class SkipSecondFile(UploadHandler):
    """A user handler that drops the second file midway."""

    def __init__(self) -> None:
        self.files = 0

    def new_file(self, info: FileInfo) -> None:
        self.files += 1

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        if self.files == 2 and offset > 10_000:
            raise SkipFile
        return data


def test_skipped_file_is_aborted_others_kept(local_storage: LocalStorage) -> None:
    request = body(
        ("a", "1.bin", b"1" * 50_000, None),
        ("b", "2.bin", b"2" * 50_000, None),
        ("c", "3.bin", b"3" * 50_000, None),
    )
    handlers = [SkipSecondFile(), StorageHandler(local_storage)]
    with spoolup.parse_form(chunks(request, 4096), CT, handlers=handlers) as form:
        assert sorted(form.files) == ["a", "c"]
        assert form.files["c"].read() == b"3" * 50_000
    assert len(stored_keys(local_storage)) == 2
    assert leftovers(local_storage) == []


def test_stored_file_is_read_lazily(
    local_storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = local_storage.open

    def spy(key: str, **kwargs: Any) -> Any:
        opened.append(key)
        return real_open(key, **kwargs)

    monkeypatch.setattr(local_storage, "open", spy)
    request = body(("f", "a.txt", b"0123456789", None))
    with spoolup.parse_form(request, CT, handlers=[StorageHandler(local_storage)]) as form:
        file = form.files["f"]
        assert opened == []
        file.seek(4)
        assert file.read(3) == b"456"
        file.seek(0)
        assert file.read() == b"0123456789"
        assert file.read() == b""
        assert opened == [file.key]  # type: ignore[attr-defined]
        assert file.tell() == 10
        with pytest.raises(ValueError, match="negative"):
            file.file.raw.seek(-1)  # type: ignore[attr-defined]


def test_stored_file_save_and_delete(local_storage: LocalStorage, tmp_path: Path) -> None:
    request = body(("f", "report.pdf", b"%PDF-1.7 body", "application/pdf"))
    form = spoolup.parse_form(request, CT, handlers=[StorageHandler(local_storage)])
    file = form.files["f"]
    assert isinstance(file, StoredFile)
    saved = file.save(tmp_path / "copy.pdf")
    assert saved.read_bytes() == b"%PDF-1.7 body"
    file.close()
    assert local_storage.exists(file.key)  # closing never deletes the object
    file.delete()
    assert not local_storage.exists(file.key)
    with pytest.raises(ObjectNotFound):
        local_storage.stat(file.key)
    form.close()


def test_handler_instance_serves_several_requests(local_storage: LocalStorage) -> None:
    handler = StorageHandler(local_storage)
    for n in range(3):
        request = body(("f", f"{n}.txt", str(n).encode(), None))
        with spoolup.parse_form(request, CT, handlers=[handler]) as form:
            assert form.files["f"].read() == str(n).encode()
    assert len(stored_keys(local_storage)) == 3


def test_s3_handler_many_small_chunks_make_full_parts(s3_storage: S3Storage) -> None:
    # Many small chunks become full parts; nothing else is buffered per file.
    data = payload(3 * s3_storage.part_size + 7, seed=9)
    request = body(("f", "big.bin", data, None))
    with spoolup.parse_form(
        chunks(request, 8192), CT, handlers=[StorageHandler(s3_storage)]
    ) as form:
        file = form.files["f"]
        assert isinstance(file, StoredFile)
        assert file.hashes["sha256"] == hashlib.sha256(data).hexdigest()
        assert (
            s3_storage.read_bytes(file.key, start=s3_storage.part_size - 3)
            == data[s3_storage.part_size - 3 :]
        )


async def test_client_disconnect_aborts(storage: Storage) -> None:
    import spoolup.asgi

    request = body(("f", "a.bin", payload(big_size(storage)), None))
    pieces = list(chunks(request[: len(request) - 5000], 65536))
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": True} for piece in pieces
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", CT.encode())],
    }
    with pytest.raises(spoolup.UploadAborted):
        await spoolup.asgi.parse_form(scope, receive, handlers=[lambda: StorageHandler(storage)])
    assert stored_keys(storage) == []
    assert leftovers(storage) == []


def test_an_empty_file_input_stores_nothing(local_storage: LocalStorage) -> None:
    # A browser sends filename="" and no bytes for a file input left empty.
    request = body(("f", "", b"", None), ("g", "e.txt", b"", None))
    with spoolup.parse_form(request, CT, handlers=[StorageHandler(local_storage)]) as form:
        assert list(form.files) == ["g"]
        kept = form.files["g"]
        assert isinstance(kept, StoredFile)
    assert stored_keys(local_storage) == [kept.key]
    assert leftovers(local_storage) == []


class FailsAtTheEnd(UploadHandler):
    def upload_complete(self) -> None:
        raise RuntimeError("late failure")


def test_a_later_upload_complete_failing_removes_stored_files(
    local_storage: LocalStorage,
) -> None:
    request = body(("a", "a.txt", b"fine", None))
    handlers = [StorageHandler(local_storage), FailsAtTheEnd()]
    with pytest.raises(RuntimeError, match="late failure"):
        spoolup.parse_form(request, CT, handlers=handlers)
    assert stored_keys(local_storage) == []


def test_every_committed_object_is_deleted_even_if_one_delete_fails(
    local_storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = body(
        ("a", "a.txt", b"1", None), ("b", "b.txt", b"2", None), ("c", "c.bin", b"x" * 5000, None)
    )
    real_delete = local_storage.delete
    calls: list[str] = []

    def flaky_delete(key: str) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise OSError("delete failed")
        real_delete(key)

    monkeypatch.setattr(local_storage, "delete", flaky_delete)
    handlers = [SizeLimitHandler(1000), StorageHandler(local_storage)]
    with pytest.raises(FileTooLarge) as err:
        spoolup.parse_form(chunks(request, 100), CT, handlers=handlers)
    assert "delete failed" in "".join(err.value.__notes__)
    assert len(calls) == 2
    assert stored_keys(local_storage) == [calls[0]]  # only the one whose delete failed
