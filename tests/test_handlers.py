"""The handler chain: built-in handlers, control exceptions, a user-written handler."""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

import spoolup
from spoolup import FileTooLarge, Limits, MalformedRequest, UnsupportedMediaType, UploadedFile
from spoolup.handlers import (
    ContentTypeHandler,
    FileInfo,
    HandlerSpec,
    HashingHandler,
    MemoryFileHandler,
    ProgressHandler,
    SizeLimitHandler,
    SkipFile,
    SpooledFileHandler,
    StopFutureHandlers,
    StopUpload,
    TemporaryFileHandler,
    UploadContext,
    UploadHandler,
    default_handlers,
    resolve_handlers,
)

BOUNDARY = "testBoundary42"
CT = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def body(*parts: tuple[str, str | None, bytes, str | None]) -> bytes:
    """A multipart body of (name, filename, data, content type) parts."""
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


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def png(color: str = "white", size: tuple[int, int] = (4, 4)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


class Recorder(UploadHandler):
    """A user handler: records every hook it is given and passes chunks on."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def upload_started(self, context: UploadContext) -> None:
        self.calls.append(("started", context.content_length))

    def new_file(self, info: FileInfo) -> None:
        self.calls.append(("new", info.field_name, info.filename))

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        self.calls.append(("chunk", len(data), offset))
        return data

    def file_complete(self, size: int) -> UploadedFile | None:
        self.calls.append(("complete", size))
        return None

    def file_skipped(self) -> None:
        self.calls.append(("skipped",))

    def upload_complete(self) -> None:
        self.calls.append(("done",))

    def upload_interrupted(self) -> None:
        self.calls.append(("interrupted",))


class Uppercase(UploadHandler):
    """A user handler that rewrites the bytes it passes on."""

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        return data.upper()


def test_base_class_is_a_pass_through_observer() -> None:
    handler = UploadHandler()
    handler.upload_started(UploadContext(Limits(), None, None))
    handler.new_file(FileInfo("f", "a"))
    assert handler.receive_data_chunk(b"abc", 0) == b"abc"
    assert handler.file_complete(3) is None
    handler.file_skipped()
    handler.body_progress(3)
    handler.upload_complete()
    handler.upload_interrupted()


def test_user_handler_sees_every_hook_in_order(tmp: Path) -> None:
    recorder = Recorder()
    data = body(("a", "one.txt", b"x" * 10, None), ("t", None, b"v", None))
    with spoolup.parse_form(
        chunked(data, 7),
        CT,
        handlers=[recorder, Uppercase(), MemoryFileHandler()],
        content_length=len(data),
    ) as form:
        assert form.files["a"].read() == b"X" * 10
        assert form.fields["t"] == "v"
    chunks = [(int(c[1]), int(c[2])) for c in recorder.calls if c[0] == "chunk"]  # type: ignore[call-overload]
    assert sum(c[0] for c in chunks) == 10
    offsets = [c[1] for c in chunks]
    assert offsets == sorted(offsets)
    assert offsets[0] == 0
    assert recorder.calls[0] == ("started", len(data))
    assert recorder.calls[1] == ("new", "a", "one.txt")
    assert recorder.calls[-2:] == [("complete", 10), ("done",)]


def test_factories_give_a_fresh_chain_per_request(tmp: Path) -> None:
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder())
        return made[-1]

    data = body(("a", "a.txt", b"1", None))
    for _ in range(2):
        spoolup.parse_form(data, CT, handlers=[factory, SpooledFileHandler]).close()
    assert len(made) == 2
    assert made[0] is not made[1]
    chain = resolve_handlers([HashingHandler, functools.partial(SpooledFileHandler, 10)])
    assert isinstance(chain[0], HashingHandler)
    assert isinstance(chain[1], SpooledFileHandler)
    assert [type(h) for h in resolve_handlers(None)] == [SpooledFileHandler]
    assert [type(h) for h in default_handlers()] == [SpooledFileHandler]
    with pytest.raises(TypeError, match="not an UploadHandler"):
        resolve_handlers([object])  # type: ignore[list-item]


def test_memory_handler_never_touches_disk(tmp: Path) -> None:
    data = body(("a", "big.bin", b"z" * 3_000_000, None))
    with spoolup.parse_form(chunked(data, 65536), CT, handlers=[MemoryFileHandler]) as form:
        f = form.files["a"]
        assert f.in_memory
        assert f.path is None
        assert f.size == 3_000_000
        assert list(tmp.iterdir()) == []


def test_temporary_file_handler_always_on_disk(tmp: Path) -> None:
    data = body(("a", "small.txt", b"tiny", None), ("b", "empty.txt", b"", None))
    with spoolup.parse_form(data, CT, handlers=[TemporaryFileHandler]) as form:
        for name, content in (("a", b"tiny"), ("b", b"")):
            f = form.files[name]
            assert not f.in_memory
            assert f.path is not None
            assert f.path.read_bytes() == content
            assert f.read() == content
        assert len(list(tmp.iterdir())) == 2
    assert list(tmp.iterdir()) == []


def test_temp_dir_is_where_temp_files_go(tmp: Path, tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    data = body(("a", "small.txt", b"tiny", None), ("b", "big.bin", b"x" * 100, None))
    handlers = [functools.partial(SpooledFileHandler, 10, temp_dir=chosen)]
    with spoolup.parse_form(data, CT, handlers=handlers) as form:
        assert form.files["a"].in_memory
        assert form.files["b"].path is not None
        assert form.files["b"].path.parent == chosen
    with spoolup.parse_form(data, CT, handlers=[TemporaryFileHandler(temp_dir=chosen)]) as form:
        assert len(list(chosen.iterdir())) == 2
    assert list(chosen.iterdir()) == []
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("chunk", [1, 7, 100, 65536])
def test_spooled_threshold_is_decided_on_bytes_received(tmp: Path, chunk: int) -> None:
    limits = Limits(memory_threshold=100)
    data = body(
        ("at", "at.bin", b"a" * 100, None),
        ("over", "over.bin", b"o" * 101, None),
        ("empty", "e.bin", b"", None),
    )
    with spoolup.parse_form(chunked(data, chunk), CT, limits=limits) as form:
        at, over, empty = form.files["at"], form.files["over"], form.files["empty"]
        assert at.in_memory
        assert at.read() == b"a" * 100
        assert not over.in_memory
        assert over.path is not None
        assert over.read() == b"o" * 101
        assert empty.in_memory
        assert empty.read() == b""
    assert list(tmp.iterdir()) == []


def test_spooled_fixed_threshold_and_default(tmp: Path) -> None:
    data = body(("a", "a.bin", b"x" * 50, None))
    with spoolup.parse_form(data, CT, handlers=[functools.partial(SpooledFileHandler, 10)]) as f:
        assert not f.files["a"].in_memory
    with spoolup.parse_form(data, CT, handlers=[functools.partial(SpooledFileHandler, 0)]) as f:
        assert not f.files["a"].in_memory
    with spoolup.parse_form(data, CT) as f:
        assert f.files["a"].in_memory


def test_hashing_handler_fills_hashes(tmp: Path) -> None:
    content = b"hello world" * 10_000
    data = body(("a", "a.bin", content, None), ("b", "b.bin", b"", None))
    handlers: list[HandlerSpec] = [
        functools.partial(HashingHandler, "sha256", "md5"),
        SpooledFileHandler,
    ]
    with spoolup.parse_form(chunked(data, 999), CT, handlers=handlers) as form:
        assert form.files["a"].hashes == {
            "sha256": hashlib.sha256(content).hexdigest(),
            "md5": hashlib.md5(content).hexdigest(),
        }
        assert form.files["b"].hashes["sha256"] == hashlib.sha256(b"").hexdigest()
    assert HashingHandler().algorithms == ("sha256",)
    with pytest.raises(ValueError, match="unsupported hash"):
        HashingHandler("nope")


class OwnFile(UploadHandler):
    """A storing handler that builds its own UploadedFile (not through from_info)."""

    def new_file(self, info: FileInfo) -> None:
        self.info = info
        self.buf = io.BytesIO()

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        self.buf.write(data)
        return None

    def file_complete(self, size: int) -> UploadedFile | None:
        self.buf.seek(0)
        return UploadedFile(self.buf, size=size, filename=self.info.filename)


def test_hashes_are_copied_onto_a_file_built_without_from_info() -> None:
    data = body(("a", "a.bin", b"abc", None))
    with spoolup.parse_form(data, CT, handlers=[HashingHandler(), OwnFile()]) as form:
        assert form.files["a"].hashes == {"sha256": hashlib.sha256(b"abc").hexdigest()}
        assert form.files["a"].field_name == ""


def test_size_limit_handler(tmp: Path) -> None:
    ok = body(("a", "a.bin", b"x" * 10, None))
    with spoolup.parse_form(ok, CT, handlers=[SizeLimitHandler(10), SpooledFileHandler()]) as f:
        assert f.files["a"].size == 10
    over = body(("a", "a.bin", b"x" * 11, None))
    with pytest.raises(FileTooLarge, match=r"SizeLimitHandler.max_size=10") as err:
        spoolup.parse_form(over, CT, handlers=[SizeLimitHandler(10), TemporaryFileHandler()])
    assert err.value.status == 413
    assert list(tmp.iterdir()) == []


def images_only() -> list[UploadHandler]:
    return [ContentTypeHandler(["image/png", "image/jpeg"]), MemoryFileHandler()]


def test_content_type_handler_accepts_matching_bytes(tmp: Path) -> None:
    image = png()
    data = body(("img", "a.png", image, "image/png"), ("raw", "b.png", image, None))
    with spoolup.parse_form(chunked(data, 5), CT, handlers=images_only()) as form:
        assert form.files["img"].read() == image
        assert form.files["raw"].read() == image
    checker = ContentTypeHandler(["image/*"])
    assert checker.is_allowed("IMAGE/GIF")
    assert not checker.is_allowed("text/plain")


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (("f", "a.png", png(), "text/html"), "type text/html is not allowed"),
        (("f", "a.png", b"just some words, " * 500, "image/png"), "no recognised"),
        (("f", "a.png", b"<html>not a png</html>" * 500, "image/png"), "looks like text/html"),
        (("f", "a.png", b"", "image/png"), "no recognised"),
        (("f", "a.zip", b"PK\x03\x04" + b"\0" * 5000, "image/png"), "looks like"),
    ],
)
def test_content_type_handler_refuses(
    tmp: Path, part: tuple[str, str, bytes, str], message: str
) -> None:
    handlers = [ContentTypeHandler(["image/png"]), TemporaryFileHandler()]
    with pytest.raises(UnsupportedMediaType, match=message) as err:
        spoolup.parse_form(body(part), CT, handlers=handlers)
    assert err.value.status == 415
    assert list(tmp.iterdir()) == []


def test_content_type_handler_judges_on_the_first_bytes(tmp: Path) -> None:
    recorder = Recorder()
    fake = b"\x00" * 4096 + b"x" * 100_000
    data = body(("f", "a.png", fake, "image/png"))
    with pytest.raises(UnsupportedMediaType):
        spoolup.parse_form(
            chunked(data, 8192),
            CT,
            handlers=[ContentTypeHandler(["image/png"]), recorder, MemoryFileHandler()],
        )
    received = sum(c[1] for c in recorder.calls if c[0] == "chunk")  # type: ignore[misc]
    assert received < 20_000  # refused long before the end
    assert recorder.calls[-1] == ("interrupted",)


def test_content_type_handler_ignores_footer_signatures_on_a_truncated_head() -> None:
    # "</svg>" at the end of the sniffed head must not pass for an SVG file.
    head = b"A" * (4096 - 6) + b"</svg>"
    data = body(("f", "a.svg", head + b"B" * 10_000, None))
    with pytest.raises(UnsupportedMediaType):
        spoolup.parse_form(data, CT, handlers=[ContentTypeHandler(["image/svg+xml"])])


def test_content_type_handler_without_required_signature(tmp: Path) -> None:
    handlers = [ContentTypeHandler(["text/csv"], require_signature=False), MemoryFileHandler()]
    data = body(("f", "a.csv", b"a,b\n1,2\n", "text/csv"))
    with spoolup.parse_form(data, CT, handlers=handlers) as form:
        assert form.files["f"].read() == b"a,b\n1,2\n"
    undeclared = body(("f", "a.csv", b"a,b\n1,2\n", None))
    with pytest.raises(UnsupportedMediaType):
        spoolup.parse_form(undeclared, CT, handlers=handlers)


def test_progress_handler_reports_body_bytes(tmp: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    data = body(("a", "a.bin", b"x" * 1000, None))
    spoolup.parse_form(
        chunked(data, 300),
        CT,
        handlers=[ProgressHandler(lambda r, e: seen.append((r, e)))],
        content_length=len(data),
    ).close()
    assert seen[-1] == (len(data), len(data))
    assert [r for r, _ in seen] == sorted(r for r, _ in seen)
    assert len(seen) >= len(data) // 300
    unknown: list[tuple[int, int | None]] = []
    spoolup.parse_form(data, CT, handlers=[ProgressHandler(lambda r, e: unknown.append((r, e)))])
    assert unknown[-1] == (len(data), None)


class Skipper(UploadHandler):
    """Skips files named skip.* at new_file, or at the first chunk for late.*."""

    def new_file(self, info: FileInfo) -> None:
        self.name = info.filename
        if info.filename.startswith("skip"):
            raise SkipFile

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        if self.name.startswith("late"):
            raise SkipFile
        return data

    def file_complete(self, size: int) -> UploadedFile | None:
        if self.name.startswith("end"):
            raise SkipFile
        return None


@pytest.mark.parametrize("storage", [TemporaryFileHandler, MemoryFileHandler, SpooledFileHandler])
def test_skip_file_drops_only_that_file(tmp: Path, storage: type[UploadHandler]) -> None:
    recorder = Recorder()
    data = body(
        ("a", "skip.bin", b"1" * 5000, None),
        ("b", "keep.bin", b"2" * 5000, None),
        ("c", "late.bin", b"3" * 5000, None),
        ("t", None, b"field", None),
        ("e", "end.bin", b"4" * 5000, None),
    )
    limits = Limits(memory_threshold=10)
    handlers = [recorder, Skipper(), storage()]
    with spoolup.parse_form(chunked(data, 1000), CT, handlers=handlers, limits=limits) as f:
        assert list(f.files) == ["b"]
        assert f.files["b"].read() == b"2" * 5000
        assert f.fields["t"] == "field"
        assert len(list(tmp.iterdir())) <= 1
    assert recorder.calls.count(("skipped",)) == 3
    assert list(tmp.iterdir()) == []


class Taker(UploadHandler):
    """Takes every file alone: handlers after it never hear of it."""

    def new_file(self, info: FileInfo) -> None:
        raise StopFutureHandlers

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        return data  # passing on goes nowhere: nothing comes after

    def file_complete(self, size: int) -> UploadedFile | None:
        return UploadedFile.from_bytes(FileInfo("x", "taken"), b"taken")


def test_stop_future_handlers() -> None:
    recorder = Recorder()
    data = body(("a", "a.bin", b"abc", None))
    with spoolup.parse_form(data, CT, handlers=[Taker(), recorder]) as form:
        assert form.files["a"].filename == "taken"
    assert [c[0] for c in recorder.calls] == ["started", "done"]


class Stopper(UploadHandler):
    def __init__(self, *, reset: bool = False) -> None:
        self.reset = reset

    def new_file(self, info: FileInfo) -> None:
        if info.filename == "stop.bin":
            raise StopUpload(connection_reset=self.reset)


class Counting:
    """An iterable body that counts the chunks read from it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.count = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for chunk in self.chunks:
            self.count += 1
            yield chunk


@pytest.mark.parametrize("reset", [False, True])
def test_stop_upload_keeps_what_came_before(tmp: Path, reset: bool) -> None:
    recorder = Recorder()
    data = (
        body(
            ("a", "a.bin", b"1" * 100, None),
            ("t", None, b"v", None),
            ("b", "stop.bin", b"2" * 100, None),
            ("c", "c.bin", b"3" * 100, None),
            ("late", None, b"w", None),
        )
        + b"x" * 5000
    )
    source = Counting(chunked(data, 50))
    handlers = [recorder, Stopper(reset=reset), TemporaryFileHandler()]
    with spoolup.parse_form(source, CT, handlers=handlers) as form:
        assert list(form.files) == ["a"]
        assert form.fields.getlist("t") == ["v"]
        assert "late" not in form.fields
    assert ("done",) in recorder.calls
    assert ("skipped",) in recorder.calls
    if reset:
        assert source.count < len(source.chunks)
    else:
        assert source.count == len(source.chunks)
    assert list(tmp.iterdir()) == []


def test_stop_upload_drain_respects_the_declared_length(tmp: Path) -> None:
    data = body(("b", "stop.bin", b"2" * 100, None), ("c", "c.bin", b"3", None))
    source = Counting([*chunked(data, 10), b"extra"])
    spoolup.parse_form(
        source, CT, handlers=[Stopper(), SpooledFileHandler()], content_length=len(data)
    ).close()
    assert source.count == len(source.chunks) - 1  # stopped at the declared end


class Exploding(UploadHandler):
    def __init__(self, where: str) -> None:
        self.where = where

    def new_file(self, info: FileInfo) -> None:
        if self.where == "new" and info.filename == "b.bin":
            raise RuntimeError("boom")

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        if self.where == "chunk" and offset > 3000:
            raise RuntimeError("boom")
        return data

    def upload_interrupted(self) -> None:
        if self.where == "interrupted":
            raise OSError("cleanup failed")


@pytest.mark.parametrize("where", ["new", "chunk"])
def test_a_handler_raising_cleans_everything(tmp: Path, where: str) -> None:
    recorder = Recorder()
    data = body(("a", "a.bin", b"1" * 5000, None), ("b", "b.bin", b"2" * 5000, None))
    handlers = [recorder, Exploding(where), TemporaryFileHandler()]
    with pytest.raises(RuntimeError, match="boom"):
        spoolup.parse_form(chunked(data, 1000), CT, handlers=handlers)
    assert recorder.calls[-1] == ("interrupted",)
    assert list(tmp.iterdir()) == []


def test_every_handler_is_interrupted_even_if_one_fails(tmp: Path) -> None:
    recorder = Recorder()
    data = body(("a", "a.bin", b"1" * 5000, None)) + b"junk"
    # The client's error (a truncated body, 400) propagates, not the handler's.
    with pytest.raises(MalformedRequest) as err:
        spoolup.parse_form(
            [data[:-200]],
            CT,
            handlers=[Exploding("interrupted"), recorder, TemporaryFileHandler()],
        )
    assert "cleanup failed" in "".join(err.value.__notes__)
    assert recorder.calls[-1] == ("interrupted",)
    assert list(tmp.iterdir()) == []


class LateStopper(UploadHandler):
    def __init__(self, where: str) -> None:
        self.where = where

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        if self.where == "chunk" and offset > 0:
            raise StopUpload(connection_reset=True)
        return data

    def file_complete(self, size: int) -> UploadedFile | None:
        if self.where == "complete":
            raise StopUpload
        return None


@pytest.mark.parametrize("where", ["chunk", "complete"])
def test_stop_upload_from_later_hooks(tmp: Path, where: str) -> None:
    data = body(("t", None, b"v", None), ("a", "a.bin", b"1" * 5000, None), ("u", None, b"w", None))
    handlers = [LateStopper(where), TemporaryFileHandler()]
    with spoolup.parse_form(chunked(data, 100), CT, handlers=handlers) as form:
        assert len(form.files) == 0
        assert list(form.fields) == ["t"]
    assert list(tmp.iterdir()) == []


def test_background_writes_survive_partial_writes(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import spoolup.handlers

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        # Like a filesystem that takes at most 1000 bytes per call.
        return os.write(fd, bytes(buffers[0])[:1000])

    monkeypatch.setattr(os, "writev", short_writev)
    content = bytes(range(256)) * 20_000
    data = body(("a", "a.bin", content, None))
    with spoolup.parse_form(chunked(data, 70_000), CT, handlers=[TemporaryFileHandler]) as form:
        assert form.files["a"].read() == content


@pytest.mark.parametrize("fail_after", [0, 3])
def test_a_failing_disk_cleans_up(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, fail_after: int
) -> None:
    import errno
    import os

    import spoolup.handlers

    calls = 0
    real_writev = os.writev

    def full(fd: int, buffers: list[bytes]) -> int:
        nonlocal calls
        calls += 1
        if calls > fail_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", full)
    data = body(("a", "a.bin", b"x" * 8_000_000, None))
    with pytest.raises(OSError, match="No space left"):
        spoolup.parse_form(chunked(data, 65536), CT)
    assert list(tmp.iterdir()) == []


def test_more_concurrent_uploads_than_writer_threads(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(spoolup.handlers, "WRITE_BATCH", 32 * 1024)
    contents = [bytes([n]) * 700_000 for n in range(40)]

    def upload(content: bytes) -> bool:
        data = body(("a", "a.bin", content, None))
        chunks = chunked(data, 16_384)
        with spoolup.parse_form(chunks, CT, handlers=[TemporaryFileHandler]) as form:
            return form.files["a"].read() == content

    with ThreadPoolExecutor(40) as pool:
        assert all(pool.map(upload, contents, timeout=60))
    assert list(tmp.iterdir()) == []


def test_temp_file_is_synced_while_received_and_save_is_durable(
    tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 10 point 11: the fsync of a large file is paid while it is received, in the
    # I/O pool, so that save() has only the tail left; save() still fsyncs after it.
    import threading

    import spoolup._io

    calls: list[tuple[str, str, int]] = []
    real_fsync = os.fsync

    def fdatasync(fd: int) -> None:
        calls.append(("background", threading.current_thread().name, os.fstat(fd).st_size))

    def fsync(fd: int) -> None:
        calls.append(("fsync", threading.current_thread().name, os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(spoolup._io, "SYNC_EVERY", 256 * 1024)
    monkeypatch.setattr(spoolup._io, "TEMP_SYNC_AFTER", 512 * 1024)
    monkeypatch.setattr(spoolup._io, "start_writeback", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(spoolup.handlers, "WRITE_BATCH", 64 * 1024)
    content = os.urandom(3 * 1024 * 1024)
    data = body(("a", "a.bin", content, None))
    with spoolup.parse_form(chunked(data, 65536), CT, handlers=[TemporaryFileHandler]) as form:
        upload = form.files["a"]
        background = [c for c in calls if c[0] == "background"]
        assert background, "no background sync while the file was received"
        assert all(name.startswith("spoolup-io") for _, name, _ in background)
        sizes = [size for _, _, size in background]
        assert min(sizes) >= 512 * 1024  # not before the file is large
        assert min(sizes) < len(content)  # before the end
        calls.clear()
        saved = upload.save(tmp_path / "kept.bin")
        assert saved.read_bytes() == content
    # save() waits for the sync in flight, then flushes the whole file itself.
    kinds = [kind for kind, _, _ in calls]
    first = kinds.index("fsync")
    assert "background" not in kinds[first:]
    assert calls[first][2] == len(content)
    assert list(tmp.iterdir()) == []


def test_small_temp_files_are_never_synced_in_the_background(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoolup._io

    calls: list[int] = []
    monkeypatch.setattr(spoolup._io, "SYNC_EVERY", 64 * 1024)
    monkeypatch.setattr(spoolup._io, "TEMP_SYNC_AFTER", 1024 * 1024)
    monkeypatch.setattr(spoolup._io, "start_writeback", calls.append)
    data = body(("a", "a.bin", os.urandom(900 * 1024), None))
    with spoolup.parse_form(chunked(data, 65536), CT, handlers=[TemporaryFileHandler]) as form:
        assert form.files["a"].size == 900 * 1024
    assert calls == []


def test_a_failed_background_sync_fails_the_save(
    tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoolup._io

    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(spoolup._io, "SYNC_EVERY", 256 * 1024)
    monkeypatch.setattr(spoolup._io, "TEMP_SYNC_AFTER", 0)
    monkeypatch.setattr(spoolup._io, "start_writeback", fdatasync)
    monkeypatch.setattr(spoolup.handlers, "WRITE_BATCH", 64 * 1024)
    data = body(("a", "a.bin", os.urandom(300 * 1024), None))
    with spoolup.parse_form(chunked(data, 65536), CT, handlers=[TemporaryFileHandler]) as form:
        with pytest.raises(OSError, match="Input/output error"):
            form.files["a"].save(tmp_path / "kept.bin")
        assert not (tmp_path / "kept.bin").exists()
    assert list(tmp.iterdir()) == []
