"""The drivers and the core: parse_form, aparse_form, receive_file, areceive_file, Form."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest

import spoolup
from spoolup import (
    FileTooLarge,
    Form,
    Limits,
    MalformedRequest,
    RequestTooLarge,
    UnsupportedMediaType,
    UploadAborted,
    UploadedFile,
)
from spoolup.files import FileInfo
from spoolup.form import MultiDict
from spoolup.handlers import (
    HandlerSpec,
    HashingHandler,
    MemoryFileHandler,
    SkipFile,
    SpooledFileHandler,
    StopUpload,
    TemporaryFileHandler,
    UploadHandler,
)

BOUNDARY = "formBoundary"
CT = f"multipart/form-data; boundary={BOUNDARY}"
MiB = 1024 * 1024


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def part(name: str, data: bytes, filename: str | None = None, extra: str = "") -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return f"--{BOUNDARY}\r\n{disposition}\r\n{extra}\r\n".encode() + data + b"\r\n"


def end() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


FILE_DATA = bytes(random.Random(1).randbytes(3 * MiB))
BODY = (
    part("title", b"Holiday")
    + part("tag", b"sea")
    + part("photo", FILE_DATA, "../../beach.jpg", "Content-Type: image/jpeg\r\n")
    + part("tag", "\u00e9t\u00e9".encode())
    + part("note", b"small", "n.txt")
    + end()
)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def check_form(form: Form) -> None:
    assert form.fields["title"] == "Holiday"
    assert form.fields.getlist("tag") == ["sea", "\u00e9t\u00e9"]
    photo = form.files["photo"]
    assert photo.filename == "beach.jpg"
    assert photo.raw_filename == "../../beach.jpg"
    assert photo.content_type == "image/jpeg"
    assert photo.size == len(FILE_DATA)
    assert not photo.in_memory
    assert photo.read() == FILE_DATA
    note = form.files["note"]
    assert note.in_memory
    assert note.read() == b"small"


@pytest.mark.parametrize(
    "make",
    [
        lambda: BODY,
        lambda: bytearray(BODY),
        lambda: memoryview(BODY),
        lambda: io.BytesIO(BODY),
        lambda: [b"", *chunked(BODY, 65536), b""],
        lambda: iter(chunked(BODY, 1000)),
        lambda: chunked(BODY, 3 * MiB - 5),
    ],
    ids=["bytes", "bytearray", "memoryview", "file", "list", "iterator", "odd"],
)
def test_parse_form_takes_every_kind_of_body(tmp: Path, make) -> None:  # type: ignore[no-untyped-def]
    with spoolup.parse_form(make(), CT, content_length=len(BODY)) as form:
        check_form(form)
        assert len(list(tmp.iterdir())) == 1
    assert list(tmp.iterdir()) == []


def test_one_byte_chunks(tmp: Path) -> None:
    small = part("a", b"1") + part("f", b"hello", "h.txt") + end()
    with spoolup.parse_form([bytes([b]) for b in small], CT) as form:
        assert form.fields["a"] == "1"
        assert form.files["f"].read() == b"hello"


def test_multidict() -> None:
    d = MultiDict([("a", 1), ("b", 2), ("a", 3)])
    assert d["a"] == 1
    assert d.getlist("a") == [1, 3]
    assert d.getlist("zz") == []
    assert d.get("zz") is None
    assert list(d) == ["a", "b"]
    assert len(d) == 2
    assert "a" in d
    assert "c" not in d
    assert d.multi_items() == [("a", 1), ("b", 2), ("a", 3)]
    assert dict(d.items()) == {"a": 1, "b": 2}
    assert "('a', 3)" in repr(d)
    with pytest.raises(KeyError):
        d["c"]


def test_empty_form_and_repr() -> None:
    with spoolup.parse_form(end(), CT) as form:
        assert len(form.fields) == 0
        assert len(form.files) == 0
        assert repr(form) == "<Form fields=[] files=[]>"
    assert repr(Form()) == "<Form fields=[] files=[]>"


def test_an_empty_file_input_is_not_a_file(tmp: Path) -> None:
    body = part("f", b"", "") + part("g", b"", "empty.txt") + part("h", b"x", "") + end()
    with spoolup.parse_form(body, CT) as form:
        assert list(form.files) == ["g", "h"]
        assert form.files["h"].filename == "upload"


def test_field_charset_and_bad_bytes() -> None:
    latin = part(
        "a", "caf\u00e9".encode("latin-1"), extra="Content-Type: text/plain; charset=latin-1\r\n"
    )
    with spoolup.parse_form(latin + end(), CT) as form:
        assert form.fields["a"] == "caf\u00e9"
    with pytest.raises(MalformedRequest, match="field 'a' is not valid utf-8"):
        spoolup.parse_form(part("a", b"\xff\xfe") + end(), CT)
    unknown = part("a", b"x", extra="Content-Type: text/plain; charset=klingon\r\n")
    with pytest.raises(MalformedRequest, match="klingon"):
        spoolup.parse_form(unknown + end(), CT)


def test_fields_after_the_first_come_whole_and_decode_the_same() -> None:
    # Past the first part, a field whose body is in the chunk skips the per-part events
    # (MultipartParser.feed_fields): same values, same errors, whatever the chunking.
    latin = part(
        "b", "caf\u00e9".encode("latin-1"), extra="Content-Type: text/plain; charset=latin-1\r\n"
    )
    body = part("a", b"1") + latin + part("c", b"") + part("a", b"2") + end()
    for chunks in ([body], chunked(body, 7), chunked(body, 64)):
        with spoolup.parse_form(chunks, CT) as form:
            assert form.fields.multi_items() == [
                ("a", "1"),
                ("b", "caf\u00e9"),
                ("c", ""),
                ("a", "2"),
            ]
    with pytest.raises(MalformedRequest, match="field 'x' is not valid utf-8"):
        spoolup.parse_form(part("a", b"1") + part("x", b"\xff") + end(), CT)
    unknown = part("x", b"x", extra="Content-Type: text/plain; charset=klingon\r\n")
    with pytest.raises(MalformedRequest, match="field 'x' is not valid klingon"):
        spoolup.parse_form(part("a", b"1") + unknown + end(), CT)


@pytest.mark.parametrize(
    "handlers",
    [
        None,
        [MemoryFileHandler],
        [partial(SpooledFileHandler, 3)],
        [HashingHandler, SpooledFileHandler],
    ],
    ids=["default", "memory", "spooled-3", "hashing"],
)
def test_small_files_in_one_piece_are_the_files_their_events_give(
    tmp: Path, handlers: list[HandlerSpec] | None
) -> None:
    # Past the first part, a file whose body is in the chunk comes whole (feed_fields);
    # with one built-in handler it is made at once. Same files, whatever the chunking.
    body = (
        part("a", b"1")
        + part("f", b"abc", "f.txt", extra="Content-Type: text/plain\r\n")
        + part("g", b"", "")  # a file input left empty: no file
        + part("h", b"defg", "h.bin")  # past a threshold of 3: a temp file
        + part("i", b"", "empty.txt")
        + end()
    )
    for chunks in ([body], chunked(body, 7), chunked(body, 100)):
        with spoolup.parse_form(chunks, CT, handlers=handlers) as form:
            files = form.files.multi_items()
            assert [(k, f.filename, f.read()) for k, f in files] == [
                ("f", "f.txt", b"abc"),
                ("h", "h.bin", b"defg"),
                ("i", "empty.txt", b""),
            ]
            assert files[0][1].content_type == "text/plain"
            spooled = handlers is not None and isinstance(handlers[0], partial)
            assert files[1][1].in_memory is not spooled
            if handlers and handlers[0] is HashingHandler:
                assert files[0][1].hashes == {"sha256": hashlib.sha256(b"abc").hexdigest()}
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("content_type", ["", "text/plain", "application/json", "multipart/mixed"])
def test_other_types_are_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as err:
        spoolup.parse_form(b"{}", content_type)
    assert err.value.status == 415


class NeverRead:
    """A body that fails the test if anything iterates over it."""

    def __iter__(self) -> Iterator[bytes]:
        raise AssertionError("the body was read")


def never_read() -> NeverRead:
    return NeverRead()


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    limits = Limits(max_body_size=100)
    with pytest.raises(RequestTooLarge, match="max_body_size=100") as err:
        spoolup.parse_form(never_read(), CT, limits=limits, content_length=101)
    assert err.value.status == 413
    with pytest.raises(MalformedRequest):
        spoolup.parse_form(never_read(), CT, content_length=-1)


def test_body_length_must_match_the_declared_length(tmp: Path) -> None:
    with pytest.raises(MalformedRequest, match="longer than its declared length"):
        spoolup.parse_form(chunked(BODY, 65536), CT, content_length=len(BODY) - 1)
    with pytest.raises(MalformedRequest, match="ended after"):
        spoolup.parse_form(chunked(BODY, 65536), CT, content_length=len(BODY) + 1)
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("cut", [100, 2 * MiB, len(BODY) - 3])
def test_truncated_body_leaves_nothing(tmp: Path, cut: int) -> None:
    with pytest.raises(MalformedRequest):
        spoolup.parse_form(chunked(BODY[:cut], 65536), CT)
    assert list(tmp.iterdir()) == []


def test_limit_crossed_mid_file_leaves_nothing(tmp: Path) -> None:
    limits = Limits(max_file_size=2 * MiB, memory_threshold=1000)
    with pytest.raises(FileTooLarge, match="max_file_size"):
        spoolup.parse_form(chunked(BODY, 65536), CT, limits=limits)
    assert list(tmp.iterdir()) == []


def test_urlencoded() -> None:
    body = b"a=1&b=hello+world&a=%C3%A9t%C3%A9&empty="
    with spoolup.parse_form(chunked(body, 3), "application/x-www-form-urlencoded") as form:
        assert form.fields.getlist("a") == ["1", "\u00e9t\u00e9"]
        assert form.fields["b"] == "hello world"
        assert form.fields["empty"] == ""
        assert len(form.files) == 0
    latin = "application/x-www-form-urlencoded; charset=latin-1"
    with spoolup.parse_form(b"a=caf%E9", latin) as form:
        assert form.fields["a"] == "caf\u00e9"
    with pytest.raises(UnsupportedMediaType, match="klingon"):
        spoolup.parse_form(b"a=1", "application/x-www-form-urlencoded; charset=klingon")
    with pytest.raises(RequestTooLarge):
        spoolup.parse_form(
            [b"a=1"] * 10, "application/x-www-form-urlencoded", limits=Limits(max_body_size=20)
        )


# -- async -----------------------------------------------------------------------


async def agen(chunks: list[bytes], fail_at: int | None = None) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(chunks):
        if i == fail_at:
            raise UploadAborted("the client disconnected")
        await asyncio.sleep(0)
        yield chunk


async def test_aparse_form(tmp: Path) -> None:
    async with await spoolup.aparse_form(agen(chunked(BODY, 65536)), CT) as form:
        check_form(form)
    assert list(tmp.iterdir()) == []
    form = await spoolup.aparse_form(BODY, CT, content_length=len(BODY))
    check_form(form)
    await form.aclose()
    async with await spoolup.aparse_form(part("a", b"b") + end(), CT) as small:
        assert small.fields["a"] == "b"
    assert list(tmp.iterdir()) == []


async def test_aparse_form_disconnect_mid_file_cleans_up(tmp: Path) -> None:
    chunks = chunked(BODY, 65536)
    with pytest.raises(UploadAborted):
        await spoolup.aparse_form(agen(chunks, fail_at=len(chunks) - 5), CT)
    assert list(tmp.iterdir()) == []


async def test_aparse_form_bad_body_cleans_up(tmp: Path) -> None:
    with pytest.raises(MalformedRequest):
        await spoolup.aparse_form(agen(chunked(BODY[:-100], 65536)), CT)
    assert list(tmp.iterdir()) == []


async def test_aparse_form_cancelled_cleans_up(tmp: Path) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for chunk in chunked(BODY[: 2 * MiB + 1000], 65536):
            yield chunk
        started.set()
        await asyncio.sleep(3600)
        yield b""  # pragma: no cover

    task = asyncio.create_task(spoolup.aparse_form(slow(), CT))
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(tmp.iterdir()) == []


class StopAtSecond(UploadHandler):
    def __init__(self) -> None:
        self.files = 0

    def new_file(self, info: FileInfo) -> None:
        self.files += 1
        if self.files == 2:
            raise StopUpload(connection_reset=True)


async def test_aparse_form_stop_upload_stops_reading(tmp: Path) -> None:
    read = 0
    many = b"".join(part(f"f{i}", b"x" * 500_000, f"{i}.bin") for i in range(10)) + end()

    async def source() -> AsyncIterator[bytes]:
        nonlocal read
        for chunk in chunked(many, 65536):
            read += 1
            yield chunk

    form = await spoolup.aparse_form(source(), CT, handlers=[StopAtSecond, SpooledFileHandler])
    assert list(form.files) == ["f0"]
    assert read < len(many) // 65536
    await form.aclose()


async def test_event_loop_stays_responsive_during_a_large_upload(tmp: Path) -> None:
    block = random.Random(7).randbytes(65536)
    assert BOUNDARY.encode() not in block
    count = 4096  # 256 MiB
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="big"\r\n\r\n'

    async def source() -> AsyncIterator[bytes]:
        yield head.encode()
        for i in range(count):
            if i % 16 == 0:
                await asyncio.sleep(0)
            yield block
        yield b"\r\n" + end()

    gaps: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    loop_thread = threading.get_ident()
    worker_threads: set[int] = set()

    class WhereItRuns(HashingHandler):
        def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
            worker_threads.add(threading.get_ident())
            return super().receive_data_chunk(data, offset)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        form = await spoolup.aparse_form(source(), CT, handlers=[WhereItRuns, SpooledFileHandler])
    finally:
        elapsed = time.perf_counter() - started
        done = True
        await tick
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)
    async with form:
        f = form.files["f"]
        assert f.size == count * 65536
        assert f.hashes["sha256"] == expected.hexdigest()
    # The parsing, hashing and writing never ran on the loop's thread: exact, not timed.
    assert worker_threads
    assert loop_thread not in worker_threads
    assert len(gaps) > 5
    # And the loop kept ticking: a ratio with a floor, not a budget, so that a loaded
    # machine (slower ticks and a slower upload alike, or one long pause) does not fail it.
    longest = max(gaps)
    assert longest < max(elapsed / 4, 2.0), f"the loop was blocked {longest:.3f}s of {elapsed:.3f}s"


# -- raw bodies ------------------------------------------------------------------


def test_receive_file(tmp: Path) -> None:
    f = spoolup.receive_file(
        io.BytesIO(FILE_DATA),
        filename="dir/../photo.jpg",
        content_type="image/jpeg; charset=binary",
        content_length=len(FILE_DATA),
    )
    assert isinstance(f, UploadedFile)
    with f:
        assert f.filename == "photo.jpg"
        assert f.raw_filename == "dir/../photo.jpg"
        assert f.content_type == "image/jpeg"
        assert f.charset == "binary"
        assert f.field_name == ""
        assert f.size == len(FILE_DATA)
        assert not f.in_memory
        assert f.read() == FILE_DATA
    assert list(tmp.iterdir()) == []
    empty = spoolup.receive_file(b"", filename="", handlers=[MemoryFileHandler])
    assert empty is not None
    assert (empty.filename, empty.raw_filename, empty.size, empty.content_type) == (
        "upload",
        None,
        0,
        None,
    )


def test_receive_file_limits(tmp: Path) -> None:
    limits = Limits(max_file_size=1000, max_body_size=2000)
    with pytest.raises(FileTooLarge, match="max_file_size=1000"):
        spoolup.receive_file(never_read(), filename="a", limits=limits, content_length=1001)
    with pytest.raises(RequestTooLarge, match="max_body_size=2000"):
        spoolup.receive_file(never_read(), filename="a", limits=limits, content_length=2001)
    with pytest.raises(FileTooLarge):
        spoolup.receive_file(chunked(b"x" * 1001, 100), filename="a", limits=limits)
    with pytest.raises(MalformedRequest):
        spoolup.receive_file([b"x" * 10], filename="a", content_length=11)
    assert list(tmp.iterdir()) == []


class SkipAll(UploadHandler):
    def new_file(self, info: FileInfo) -> None:
        raise SkipFile


def test_receive_file_skipped_gives_none(tmp: Path) -> None:
    assert (
        spoolup.receive_file(b"abc", filename="a", handlers=[SkipAll(), TemporaryFileHandler()])
        is None
    )
    assert list(tmp.iterdir()) == []


async def test_areceive_file(tmp: Path) -> None:
    f = await spoolup.areceive_file(agen(chunked(FILE_DATA, 65536)), filename="a.bin")
    assert f is not None
    async with f:
        assert await f.aread() == FILE_DATA
    assert list(tmp.iterdir()) == []
    with pytest.raises(UploadAborted):
        await spoolup.areceive_file(agen(chunked(FILE_DATA, 65536), fail_at=40), filename="a")
    assert list(tmp.iterdir()) == []


def test_receiver_abort_after_finish_is_a_no_op(tmp: Path) -> None:
    from spoolup.form import Receiver
    from spoolup.multipart import MultipartParser

    receiver = Receiver(
        MultipartParser(BOUNDARY),
        [SpooledFileHandler()],
        limits=Limits(),
        content_length=None,
        content_type=CT,
    )
    receiver.feed(BODY)
    form = receiver.finish()
    receiver.abort()
    check_form(form)
    form.close()
    with pytest.raises(MalformedRequest, match="no multipart boundary"):
        spoolup.parse_form(bytearray(), CT)


async def test_aparse_form_stop_in_the_last_batch(tmp: Path) -> None:
    small = part("a", b"1", "a.bin") + part("b", b"2", "b.bin") + end()
    form = await spoolup.aparse_form(
        agen(chunked(small, 10)), CT, handlers=[StopAtSecond, SpooledFileHandler]
    )
    assert list(form.files) == ["a"]
    await form.aclose()


# -- batches: joined, received ahead while the worker is busy ---------------------


class BlockFirstChunk(UploadHandler):
    """Holds the worker on the first chunk until released."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.released: bool | None = None

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        if self.released is None:
            self.released = self.release.wait(10)
        return data


async def test_aparse_form_receives_ahead_while_the_worker_is_busy(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spoolup._io import BATCH_SIZE, READ_AHEAD
    from spoolup.form import Receiver

    batches: list[int] = []
    feed_many = Receiver.feed_many

    def recording_feed_many(self: Receiver, chunks: list[bytes]) -> bool:
        batches.append(sum(map(len, chunks)))
        return feed_many(self, chunks)

    monkeypatch.setattr(Receiver, "feed_many", recording_feed_many)
    data = random.Random(2).randbytes(8 * MiB)
    body = part("f", data, "f.bin") + end()
    release = threading.Event()
    yielded = 0
    most_while_blocked = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal yielded, most_while_blocked
        for chunk in chunked(body, 65536):
            yielded += len(chunk)
            if yielded >= BATCH_SIZE + READ_AHEAD:
                release.set()  # the driver read ahead by the whole bound
            if not release.is_set():
                most_while_blocked = yielded
            await asyncio.sleep(0)
            yield chunk

    blocker = BlockFirstChunk(release)
    form = await spoolup.aparse_form(source(), CT, handlers=[lambda: blocker, SpooledFileHandler])
    async with form:
        assert blocker.released
        # Never more than one batch in the worker and the read-ahead waiting.
        assert most_while_blocked <= BATCH_SIZE + READ_AHEAD + 65536
        # What was received meanwhile went to the worker in one hop.
        assert batches[0] == BATCH_SIZE
        assert batches[1] >= READ_AHEAD
        assert hashlib.sha256(form.files["f"].read()).digest() == hashlib.sha256(data).digest()


def test_small_limits_keep_small_batches() -> None:
    from spoolup.form import Receiver
    from spoolup.multipart import MultipartParser

    receiver = Receiver(
        MultipartParser(BOUNDARY),
        [],
        limits=Limits(max_file_size=1024 * 1024),
        content_length=None,
        content_type=CT,
    )
    assert receiver.batch_size == receiver.read_ahead == 256 * 1024
    receiver.abort()


def test_odd_field_charsets_are_malformed() -> None:
    # "undefined" is a codec that raises a bare UnicodeError.
    body = part("a", b"x", extra="Content-Type: text/plain; charset=undefined\r\n") + end()
    with pytest.raises(MalformedRequest) as err:
        spoolup.parse_form(body, CT)
    assert err.value.status == 400


@pytest.mark.parametrize("charset", ['"utf-8\x00"', "utf-8\x00", '"a b"'])
def test_charsets_that_are_not_tokens_are_dropped(charset: str) -> None:
    body = part("a", "é".encode(), extra=f"Content-Type: text/plain; charset={charset}\r\n")
    with spoolup.parse_form(body + end(), CT) as form:
        assert form.fields["a"] == "é"


@pytest.mark.parametrize("charset", ['"utf-8\x00"', "\udcff", "undefined"])
def test_odd_urlencoded_charsets_are_unsupported(charset: str) -> None:
    ct = f"application/x-www-form-urlencoded; charset={charset}"
    with pytest.raises(UnsupportedMediaType):
        spoolup.parse_form(b"a=b", ct)


class Recorder(UploadHandler):
    """Records the per-file hooks it hears."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def file_complete(self, size: int) -> UploadedFile | None:
        self.calls.append("complete")
        return None

    def file_skipped(self) -> None:
        self.calls.append("skipped")


class StoreEverything(UploadHandler):
    """A storing handler that counts what it stored (as a storage backend would)."""

    def __init__(self) -> None:
        self.stored: list[int] = []

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        return None

    def file_complete(self, size: int) -> UploadedFile | None:
        self.stored.append(size)
        return UploadedFile(io.BytesIO(b"\0" * size), size=size, filename="x")


def test_an_empty_file_input_is_skipped_before_any_handler_stores_it() -> None:
    recorder, store = Recorder(), StoreEverything()
    body = part("f", b"", "") + part("g", b"", "empty.txt") + end()
    with spoolup.parse_form(body, CT, handlers=[recorder, store]) as form:
        assert list(form.files) == ["g"]
    assert recorder.calls == ["skipped", "complete"]
    assert store.stored == [0]  # only the named empty file


class BadClose(UploadedFile):
    def close(self) -> None:
        super().close()
        raise OSError("close failed")


class BadCloseHandler(StoreEverything):
    def file_complete(self, size: int) -> UploadedFile | None:
        return BadClose(io.BytesIO(b""), size=0, filename="x")


def test_form_close_closes_every_file_even_if_one_fails(tmp: Path) -> None:
    big = b"y" * 100
    body = part("a", b"x", "a.txt") + part("b", big, "b.txt") + end()
    form = spoolup.parse_form(body, CT, handlers=[SpooledFileHandler(memory_threshold=10)])
    bad = BadClose(io.BytesIO(b""), size=0, filename="x")
    form = Form(form.fields, MultiDict([("a", bad), *form.files.multi_items()]))  # failing first
    with pytest.raises(OSError, match="close failed"):
        form.close()
    assert form.files["b"].closed
    assert list(tmp.iterdir()) == []


class FailAtEnd(UploadHandler):
    def upload_complete(self) -> None:
        raise RuntimeError("boom")


def test_abort_closes_every_file_even_if_one_fails(tmp: Path) -> None:
    # The first file's close raises; the temp file of the second is still removed.
    class FirstBad(SpooledFileHandler):
        def __init__(self) -> None:
            super().__init__(memory_threshold=10)
            self.n = 0

        def file_complete(self, size: int) -> UploadedFile | None:
            self.n += 1
            file = super().file_complete(size)
            if self.n == 1:
                assert file is not None
                file.close()
                return BadClose(io.BytesIO(b""), size=0, filename="x")
            return file

    body = part("a", b"x", "a.txt") + part("b", b"y" * 100, "b.txt") + end()
    with pytest.raises(RuntimeError, match="boom") as err:
        spoolup.parse_form(body, CT, handlers=[FailAtEnd(), FirstBad()])
    assert "close failed" in "".join(err.value.__notes__)
    assert list(tmp.iterdir()) == []
