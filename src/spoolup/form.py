"""The parsed form and the drivers that build it: one core, thin sync and async loops.

:func:`parse_form` and :func:`aparse_form` read a ``multipart/form-data`` or
``application/x-www-form-urlencoded`` body into a :class:`Form`; :func:`receive_file`
and :func:`areceive_file` read a raw body as one :class:`~spoolup.files.UploadedFile`.
All four feed the same :class:`Receiver`, which drives the sans-IO parser and the
handler chain (:mod:`spoolup.handlers`); the drivers only pull bytes.

The async drivers never write to disk, roll over or hash on the event loop: they
gather incoming chunks into batches of :data:`~spoolup._io.BATCH_SIZE` and hand
each batch to a worker thread, receiving the next chunks while it is processed. One
batch is in the worker at a time; while it is busy the driver keeps receiving, up to
:data:`READ_AHEAD` bytes, and then hands over all of them at once. Memory stays
bounded by about twice the read-ahead (one hop in the worker, one being received)
plus the parser.

Whatever fails (bad input, a crossed limit, a handler raising, the client leaving,
cancellation), every handler hears ``upload_interrupted`` and every file received so
far is closed, so no temp file is left behind.
"""

from __future__ import annotations

import asyncio
import codecs
import threading
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, Protocol, Self, TypeAlias, TypeVar

from spoolup._io import BATCH_SIZE, READ_AHEAD, READ_SIZE
from spoolup.errors import FileTooLarge, MalformedRequest, RequestTooLarge, UnsupportedMediaType
from spoolup.files import FileInfo, UploadedFile, memory_file
from spoolup.handlers import (
    HandlerSpec,
    SkipFile,
    StopFutureHandlers,
    StopUpload,
    UploadContext,
    UploadHandler,
    memory_limit,
    resolve_handlers,
)
from spoolup.headers import media_type, multipart_boundary, parse_options_header, safe_filename
from spoolup.limits import Limits
from spoolup.multipart import (
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    WholeField,
    WholeFile,
)
from spoolup.urlencoded import Field, URLEncodedParser

__all__ = [
    "Body",
    "Form",
    "MultiDict",
    "aparse_form",
    "areceive_file",
    "parse_form",
    "receive_file",
]

V = TypeVar("V")

Body: TypeAlias = bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes]
"""What the blocking drivers read: bytes, a binary file-like object, or chunks."""

_MIN_BATCH = 64 * 1024

_DEFAULT_LIMITS = Limits()
# A field's bytes before its first chunk (a field may have none).
_NO_DATA = b""
_ZEROS = [0] * 8
_MULTIPART = "multipart/form-data"
_URLENCODED = "application/x-www-form-urlencoded"


class MultiDict(Mapping[str, V]):
    """A read-only mapping where a key may hold several values, in arrival order.

    ``d[key]`` is the first value (``KeyError`` if none), :meth:`getlist` all of them;
    iteration, ``len`` and ``in`` see each key once. :meth:`multi_items` gives every
    ``(key, value)`` pair in the order they arrived.
    """

    # Keys and values in two lists, the first value of each key in a dict, and lists
    # only for the keys given more than once: a form of thousands of parts holds no
    # container object per part (fewer objects for the garbage collector to track).
    __slots__ = ("_first", "_keys", "_more", "_values")

    def __init__(self, pairs: Iterable[tuple[str, V]] = ()) -> None:
        keys: list[str] = []
        values: list[V] = []
        first: dict[str, V] = {}
        more: dict[str, list[V]] = {}
        for key, value in pairs:
            keys.append(key)
            values.append(value)
            if key not in first:
                first[key] = value
            elif key in more:
                more[key].append(value)
            else:
                more[key] = [value]
        self._keys = keys
        self._values = values
        self._first = first
        self._more = more

    def __getitem__(self, key: str) -> V:
        return self._first[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, key: object) -> bool:
        return key in self._first

    def getlist(self, key: str) -> list[V]:
        """Every value of ``key`` in arrival order (a new list; empty if none)."""
        if key not in self._first:
            return []
        return [self._first[key], *self._more.get(key, ())]

    def multi_items(self) -> list[tuple[str, V]]:
        """Every ``(key, value)`` pair in arrival order."""
        return list(zip(self._keys, self._values, strict=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.multi_items()!r})"


def _close_all(files: Iterable[UploadedFile]) -> None:
    """Close every file, even past one whose close raises; then raise the first error."""
    error: Exception | None = None
    for file in files:
        try:
            file.close()
        except Exception as exc:
            if error is None:
                error = exc
    if error is not None:
        raise error


class Form:
    """A parsed form: text ``fields`` and ``files``, both :class:`MultiDict`.

    Close it when done (or use ``with`` / ``async with``): every file is closed and
    every temp file removed. A form never closed still loses its temp files when they
    are garbage collected, and at the latest at interpreter exit.
    """

    __slots__ = ("fields", "files")

    def __init__(
        self,
        fields: MultiDict[str] | None = None,
        files: MultiDict[UploadedFile] | None = None,
    ) -> None:
        self.fields: MultiDict[str] = MultiDict() if fields is None else fields
        self.files: MultiDict[UploadedFile] = MultiDict() if files is None else files

    def __repr__(self) -> str:
        return f"<Form fields={list(self.fields)} files={list(self.files)}>"

    def close(self) -> None:
        """Close every file (removing temp files). Idempotent.

        Every file is closed even if closing one raises; the first error is raised then.
        """
        _close_all(file for _, file in self.files.multi_items())

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread if a file is on disk."""
        if all(f.in_memory for _, f in self.files.multi_items()):
            self.close()
        else:
            await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# -- the core ------------------------------------------------------------------


_Event: TypeAlias = PartStart | PartData | PartEnd | WholeField | WholeFile | Field
"""What a parser gives the receiver: multipart events, or urlencoded fields."""


class _Parser(Protocol):
    def feed(self, data: bytes, /) -> Sequence[_Event]: ...
    def close(self) -> Sequence[_Event] | None: ...


class _RawBody:
    """A parser for a raw body: the whole body is one file part."""

    __slots__ = ("_limit", "_size", "_start")

    def __init__(self, start: PartStart, limits: Limits) -> None:
        self._start: PartStart | None = start
        self._limit = limits.max_file_size
        self._size = 0

    def feed(self, data: bytes) -> list[_Event]:
        self._size += len(data)
        if self._size > self._limit:
            raise FileTooLarge.for_limit("max_file_size", self._limit, "file")
        events: list[_Event] = []
        if self._start is not None:
            events.append(self._start)
            self._start = None
        if data:
            events.append(PartData(data))
        return events

    def close(self) -> list[_Event]:
        events: list[_Event] = [] if self._start is None else [self._start]
        self._start = None
        events.append(PartEnd())
        return events


class _Multipart:
    """Adapts :class:`spoolup.multipart.MultipartParser` to the receiver: a part in one
    chunk comes as one tuple, not three event objects (see ``feed_fields``)."""

    __slots__ = ("_parser",)

    def __init__(self, boundary: bytes, limits: Limits) -> None:
        self._parser = MultipartParser(boundary, limits=limits)

    def feed(self, data: bytes) -> Sequence[_Event]:
        return self._parser.feed_fields(data)

    def close(self) -> None:
        self._parser.close()


class _URLEncoded:
    """Adapts :class:`spoolup.urlencoded.URLEncodedParser` to the receiver."""

    __slots__ = ("_parser",)

    def __init__(self, limits: Limits, charset: str) -> None:
        self._parser = URLEncodedParser(limits=limits, charset=charset)

    def feed(self, data: bytes) -> Sequence[_Event]:
        return self._parser.feed(data)

    def close(self) -> Sequence[_Event]:
        return self._parser.close()


def _form_parser(content_type: str, limits: Limits) -> _Parser:
    mime, params = parse_options_header(content_type)
    if mime == _MULTIPART:
        return _Multipart(multipart_boundary(content_type), limits)
    if mime == _URLENCODED:
        charset = params.get("charset", "utf-8")
        try:
            codecs.lookup(charset)
        except (LookupError, ValueError):  # ValueError: a NUL or a lone surrogate
            raise UnsupportedMediaType(f"unknown charset {charset[:64]!r}") from None
        return _URLEncoded(limits, charset)
    shown = mime[:64] if mime else "no Content-Type"
    raise UnsupportedMediaType(
        f"expected {_MULTIPART} or {_URLENCODED}, not {shown!r}",
    )


class Receiver:
    """Feeds one body to a parser and its events to the handler chain (internal).

    The single core behind every driver: ``feed`` each chunk (or ``feed_many`` a
    batch), then ``finish`` for the :class:`Form`; on any exception call ``abort``.
    It checks the declared length (a body longer or shorter than ``content_length``
    is a :class:`MalformedRequest`) and ``max_body_size``. Thread-safe in the sense the
    async drivers need: calls are serialised by a lock, so ``abort`` from the event
    loop waits for a batch being processed in a worker thread.
    """

    def __init__(
        self,
        parser: _Parser,
        handlers: list[UploadHandler],
        *,
        limits: Limits,
        content_length: int | None,
        content_type: str | None,
    ) -> None:
        self._parser = parser
        self._handlers = handlers
        self._limits = limits
        self._max_body = limits.max_body_size
        # Small limits, small batches: a crossed limit is seen within a fraction of it.
        smallest = min(limits.max_body_size, limits.max_file_size) // 4
        self.batch_size = max(_MIN_BATCH, min(BATCH_SIZE, smallest))
        self.read_ahead = max(self.batch_size, min(READ_AHEAD, smallest))
        self._content_length = content_length
        self._lock = threading.Lock()
        self.received = 0
        # What the form will hold, in arrival order (made into MultiDicts at the end).
        self._field_names: list[str] = []
        self._field_values: list[str] = []
        self._file_names: list[str] = []
        self._file_values: list[UploadedFile] = []
        self._progress = [
            h for h in handlers if type(h).body_progress is not UploadHandler.body_progress
        ]
        # The part being received: a file (_active set), a field (_field set: its
        # bytes so far, one chunk or a list of them) or a part being skipped (neither).
        self._info: FileInfo | None = None
        self._active: list[UploadHandler] | None = None
        self._chain: list[UploadHandler] = []
        self._offsets: list[int] = []
        self._field: bytes | list[bytes] | None = None
        self._field_name = ""
        self._field_charset = "utf-8"
        self._stopped: StopUpload | None = None
        self._closed = False
        context = UploadContext(limits, content_length, content_type)
        for handler in handlers:
            handler.upload_started(context)
        # A file in one piece, for the usual chain of one built-in storing handler.
        self._memory_limit = memory_limit(handlers)

    @property
    def files(self) -> MultiDict[UploadedFile]:
        """The files received so far, in arrival order (the form's files once finished)."""
        return MultiDict(zip(self._file_names, self._file_values, strict=True))

    # -- feeding ---------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        """Process the next chunk; ``False`` when no more of the body should be read."""
        with self._lock:
            return self._feed(data)

    def feed_many(self, chunks: list[bytes]) -> bool:
        """Process a batch of chunks; ``False`` when no more of the body should be read."""
        with self._lock:
            feed = self._feed
            return all(feed(chunk) for chunk in chunks)

    def _feed(self, data: bytes) -> bool:
        received = self.received = self.received + len(data)
        if self._stopped is not None:
            # Draining after StopUpload: count, never parse, never raise.
            if self._stopped.connection_reset:
                return False
            declared = self._content_length
            return received < (self._max_body if declared is None else declared)
        if self._content_length is not None and received > self._content_length:
            raise MalformedRequest(
                f"the body is longer than its declared length {self._content_length}"
            )
        if received > self._max_body:
            raise RequestTooLarge.for_limit("max_body_size", self._max_body, "request body")
        self._dispatch(self._parser.feed(data))
        for handler in self._progress:
            handler.body_progress(received)
        return self._keep_reading()

    def _keep_reading(self) -> bool:
        return self._stopped is None or not self._stopped.connection_reset

    def _dispatch(self, events: Sequence[_Event]) -> None:
        for event in events:
            # One handler of the control exceptions for every hook a part calls.
            try:
                if type(event) is PartData:
                    if self._active is not None:
                        self._file_data(event.data)
                        continue
                    held = self._field
                    if held is None:  # a part being skipped
                        continue
                    # A field is mostly one chunk: keep it as it is, a list only for more.
                    if held is _NO_DATA:
                        self._field = event.data
                    elif isinstance(held, list):
                        held.append(event.data)
                    else:
                        self._field = [held, event.data]
                elif type(event) is tuple:  # a part in one piece
                    if len(event) == 3:  # WholeField
                        name, raw, charset = event
                        self._add_field(name, raw, charset or "utf-8")
                    else:  # WholeFile
                        self._whole_file(event)
                elif type(event) is PartEnd:
                    if self._active is not None:
                        self._file_end()
                    elif self._field is not None:
                        self._field_end()
                    self._info = None
                elif type(event) is PartStart:
                    if event.filename is None:
                        self._field = _NO_DATA
                        self._field_name = event.name
                        self._field_charset = event.charset or "utf-8"
                    else:
                        self._file_start(event, event.filename)
                elif type(event) is Field:
                    self._field_names.append(event.name)
                    self._field_values.append(event.value)
            except SkipFile:
                self._skip()
            except StopUpload as stop:
                self._stop(stop)
                return

    def _whole_file(self, part: WholeFile) -> None:
        """A file part whose body came in one piece: the same hooks as its events, or
        none at all when the one handler is a built-in that keeps it in memory."""
        name, filename, raw_filename, content_type, charset, headers, data = part
        if len(data) <= self._memory_limit and (data or raw_filename != ""):
            file = memory_file(
                data, name, filename, raw_filename, content_type, charset, headers, {}
            )
            self._file_names.append(name)
            self._file_values.append(file)
            return
        start = PartStart(name, filename, raw_filename, content_type, charset, headers)
        self._file_start(start, filename)
        if data:
            self._file_data(data)
        self._file_end()
        self._info = None

    def _file_start(self, event: PartStart, filename: str) -> None:
        info = self._info = FileInfo(
            event.name,
            filename,
            event.raw_filename,
            event.content_type,
            event.charset,
            event.headers,
            self._content_length,
        )
        # One list of active handlers and one of offsets for the request, refilled
        # for each file: no new lists per part.
        active = self._chain
        active.clear()
        self._active = active
        for handler in self._handlers:
            active.append(handler)
            try:
                handler.new_file(info)
            except StopFutureHandlers:
                break
        offsets = self._offsets
        offsets.clear()
        offsets.extend(_ZEROS[: len(active)] if len(active) <= len(_ZEROS) else [0] * len(active))

    def _file_data(self, data: bytes) -> None:
        active = self._active
        assert active is not None
        offsets = self._offsets
        if len(active) == 1:  # the usual chain of one storing handler
            active[0].receive_data_chunk(data, offsets[0])
            offsets[0] += len(data)
            return
        for i, handler in enumerate(active):
            size = len(data)
            out = handler.receive_data_chunk(data, offsets[i])
            offsets[i] += size
            if out is None:
                return
            data = out

    def _file_end(self) -> None:
        active = self._active
        info = self._info
        assert active is not None
        assert info is not None
        if info.raw_filename == "" and (not self._offsets or self._offsets[0] == 0):
            # What a browser sends for a file input left empty: not a file. Dropped
            # before any handler stores it (a storage handler would commit an empty
            # object that no form lists, and nobody would delete).
            self._skip()
            return
        file: UploadedFile | None = None
        for i, handler in enumerate(active):
            file = handler.file_complete(self._offsets[i])
            if file is not None:
                break
        self._active = None
        if file is None:
            return
        if info.hashes and file.hashes is not info.hashes:
            for name, digest in info.hashes.items():
                file.hashes.setdefault(name, digest)
        self._file_names.append(info.field_name)
        self._file_values.append(file)

    def _field_end(self) -> None:
        held = self._field
        assert held is not None
        self._field = None
        raw = b"".join(held) if isinstance(held, list) else held
        self._add_field(self._field_name, raw, self._field_charset)

    def _add_field(self, name: str, raw: bytes, charset: str) -> None:
        try:
            value = raw.decode(charset)
        # ValueError covers every UnicodeError (the "undefined" codec raises a bare one)
        # and a charset name holding a NUL.
        except (ValueError, LookupError):
            raise MalformedRequest(f"field {name[:100]!r} is not valid {charset[:32]}") from None
        self._field_names.append(name)
        self._field_values.append(value)

    def _skip(self) -> None:
        active = self._active
        self._active = None
        if active:
            for handler in active:
                handler.file_skipped()

    def _stop(self, stop: StopUpload) -> None:
        self._skip()
        self._stopped = stop

    # -- ending ----------------------------------------------------------------

    def finish(self, tail: Sequence[bytes] = ()) -> Form:
        """Feed ``tail``, check the body is complete and return the form."""
        with self._lock:
            for chunk in tail:
                if not self._feed(chunk):
                    break
            if self._stopped is None:
                if self._content_length is not None and self.received < self._content_length:
                    raise MalformedRequest(
                        f"the body ended after {self.received} of its declared "
                        f"{self._content_length} bytes"
                    )
                events = self._parser.close()
                if events:
                    self._dispatch(events)
            for handler in self._handlers:
                handler.upload_complete()
            self._closed = True
            return Form(
                MultiDict(zip(self._field_names, self._field_values, strict=True)),
                MultiDict(zip(self._file_names, self._file_values, strict=True)),
            )

    def abort(self) -> None:
        """Tell every handler the upload failed and close every file received. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._active = None
            errors: list[BaseException] = []
            for handler in self._handlers:
                try:
                    handler.upload_interrupted()
                except Exception as exc:
                    errors.append(exc)
            try:
                _close_all(self._file_values)
            except Exception as exc:
                errors.append(exc)
            if errors:
                raise errors[0]


# -- the drivers -----------------------------------------------------------------


def _chunks(body: Body) -> Iterator[bytes]:
    if isinstance(body, bytes):
        if body:
            yield body
    elif isinstance(body, (bytearray, memoryview)):
        if body:
            yield bytes(body)
    elif hasattr(body, "read"):
        read = body.read
        while chunk := read(READ_SIZE):
            yield chunk
    else:
        for chunk in body:
            if chunk:
                yield chunk


def _abort_after(receiver: Receiver, error: BaseException) -> None:
    """Abort ``receiver`` after ``error``, which stays the exception that propagates.

    A handler failing to clean up must not turn a 400 or 413 into another error: its
    exception is recorded as a note on ``error``.
    """
    try:
        receiver.abort()
    except Exception as cleanup:
        error.add_note(f"cleaning up after it also failed: {cleanup!r}")


def _run(receiver: Receiver, body: Body) -> Form:
    try:
        for chunk in _chunks(body):
            if not receiver.feed(chunk):
                break
        return receiver.finish()
    except BaseException as exc:
        _abort_after(receiver, exc)
        raise


async def _arun(receiver: Receiver, body: AsyncIterable[bytes] | bytes) -> Form:
    loop = asyncio.get_running_loop()
    in_flight: asyncio.Future[bool] | None = None
    batch: list[bytes] = []
    size = 0
    batch_size = receiver.batch_size
    read_ahead = receiver.read_ahead
    try:
        if isinstance(body, bytes):
            batch = [body]
        else:
            async for chunk in body:
                batch.append(chunk)
                size += len(chunk)
                if in_flight is not None and in_flight.done():
                    # Raises at once if the worker hit an error (a limit, bad input).
                    keep_reading = in_flight.result()
                    in_flight = None
                    if not keep_reading:
                        batch = []
                        break
                if size < batch_size:
                    continue
                if in_flight is not None:
                    # Waiting would stop the reading (the server pauses a connection
                    # whose body is not received): keep receiving, up to a bound.
                    if size < read_ahead:
                        continue
                    if not await in_flight:
                        batch = []
                        break
                in_flight = loop.run_in_executor(None, receiver.feed_many, batch)
                batch, size = [], 0
            if in_flight is not None and not await in_flight:
                batch = []
        return await loop.run_in_executor(None, receiver.finish, batch)
    except BaseException as exc:
        # abort() takes the receiver's lock, so it runs after a batch still in the
        # worker; in a thread, it completes even if this task is cancelled again.
        await asyncio.shield(loop.run_in_executor(None, _abort_after, receiver, exc))
        raise


def _check_declared(limits: Limits, content_length: int | None) -> None:
    if content_length is not None:
        if content_length < 0:
            raise MalformedRequest(f"invalid Content-Length {content_length}")
        limits.check_body_size(content_length)


def _form_receiver(
    content_type: str,
    limits: Limits | None,
    handlers: Iterable[HandlerSpec] | None,
    content_length: int | None,
) -> Receiver:
    limits = _DEFAULT_LIMITS if limits is None else limits
    _check_declared(limits, content_length)
    parser = _form_parser(content_type, limits)
    return Receiver(
        parser,
        resolve_handlers(handlers),
        limits=limits,
        content_length=content_length,
        content_type=content_type,
    )


def parse_form(
    body: Body,
    content_type: str,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
    content_length: int | None = None,
) -> Form:
    """Read a ``multipart/form-data`` or ``application/x-www-form-urlencoded`` body.

    ``body`` is ``bytes``, a binary file-like object (read until EOF, 1 MiB at a
    time) or an iterable of ``bytes`` chunks of any size. ``content_type`` is the
    request's ``Content-Type``; any other type raises :class:`UnsupportedMediaType`.
    ``handlers`` are instances or factories (see :mod:`spoolup.handlers`); the default
    spools each file to disk past ``limits.memory_threshold``. ``content_length`` is the
    declared length: over ``max_body_size`` it is a 413 before anything is read, and a
    body of another length is a :class:`MalformedRequest`.

    Raises an :class:`~spoolup.UploadError` for bad input; on any error nothing is left
    on disk. Close the returned form (or use ``with``) to remove its temp files.
    """
    receiver = _form_receiver(content_type, limits, handlers, content_length)
    return _run(receiver, body)


async def aparse_form(
    body: AsyncIterable[bytes] | bytes,
    content_type: str,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
    content_length: int | None = None,
) -> Form:
    """:func:`parse_form` for an async iterable of chunks, without blocking the loop.

    Parsing, handlers, disk writes and hashing run in a worker thread, one batch at
    a time, while the next chunks are received. If the source raises (an ASGI
    disconnect raises :class:`~spoolup.UploadAborted`) or the task is cancelled,
    everything received is cleaned up before the exception propagates.
    """
    receiver = _form_receiver(content_type, limits, handlers, content_length)
    return await _arun(receiver, body)


def _file_receiver(
    filename: str,
    *,
    content_type: str | None,
    limits: Limits | None,
    handlers: Iterable[HandlerSpec] | None,
    content_length: int | None,
    field_name: str,
) -> Receiver:
    limits = _DEFAULT_LIMITS if limits is None else limits
    _check_declared(limits, content_length)
    if content_length is not None and content_length > limits.max_file_size:
        raise FileTooLarge.for_limit("max_file_size", limits.max_file_size, "file")
    mime: str | None = None
    charset: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    if content_type:
        mime, charset = media_type(content_type)
        headers = (("content-type", content_type),)
    start = PartStart(field_name, safe_filename(filename), filename or None, mime, charset, headers)
    return Receiver(
        _RawBody(start, limits),
        resolve_handlers(handlers),
        limits=limits,
        content_length=content_length,
        content_type=content_type,
    )


def _only_file(form: Form) -> UploadedFile | None:
    files = form.files.multi_items()
    return files[0][1] if files else None


def receive_file(
    body: Body,
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
    content_length: int | None = None,
    field_name: str = "",
) -> UploadedFile | None:
    """Read a raw (non-form) body as one file, through the same handlers and limits.

    ``filename`` is the name the client gave (made safe for :attr:`UploadedFile.filename`,
    kept as sent in ``raw_filename``); ``content_type`` the declared type of the bytes
    (one that is not a media type becomes ``application/octet-stream``, see
    :func:`spoolup.headers.media_type`).
    ``max_file_size`` and ``max_body_size`` apply, before reading when
    ``content_length`` says so. Returns ``None`` only when a handler skipped or stopped
    the file, or the chain has no storing handler.
    """
    receiver = _file_receiver(
        filename,
        content_type=content_type,
        limits=limits,
        handlers=handlers,
        content_length=content_length,
        field_name=field_name,
    )
    return _only_file(_run(receiver, body))


async def areceive_file(
    body: AsyncIterable[bytes] | bytes,
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
    content_length: int | None = None,
    field_name: str = "",
) -> UploadedFile | None:
    """:func:`receive_file` for an async iterable of chunks, without blocking the loop."""
    receiver = _file_receiver(
        filename,
        content_type=content_type,
        limits=limits,
        handlers=handlers,
        content_length=content_length,
        field_name=field_name,
    )
    return _only_file(await _arun(receiver, body))
