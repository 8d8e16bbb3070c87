"""The handler chain: what happens to the bytes of each file part.

Every file part is offered to the handlers of the request in order, the way Django's
upload handlers work. A handler subclasses :class:`UploadHandler` and overrides the
hooks it needs::

    upload_started(context)       once, before the body is read
    new_file(info)                a file part begins (FileInfo: names, type, headers)
    receive_data_chunk(data, offset) -> bytes | None
                                  return the chunk to pass it to the next handler,
                                  None to keep it (the handlers after see nothing)
    file_complete(size) -> UploadedFile | None
                                  the part ended; the first handler to return a file
                                  owns it, the handlers after it are not asked
    file_skipped()                the current file was dropped: release what you hold
    body_progress(received)       body bytes read so far (only if overridden)
    upload_complete()             the body was read and parsed
    upload_interrupted()          the upload failed (bad input, a handler raised, the
                                  client left): release everything you hold

Observers (hashing, checks, progress) pass chunks on and come first; a storing handler
(memory, temp file, spooled, storage) keeps them and comes last. Three exceptions steer
the chain; they are not errors and never reach the application:

- :class:`StopFutureHandlers` from ``new_file``: this handler takes the file; the
  handlers after it are not told about it at all.
- :class:`SkipFile` from ``new_file``, ``receive_data_chunk`` or ``file_complete``:
  drop this file (``file_skipped`` is called on every handler that saw ``new_file``),
  read and discard the rest of its part, carry on with the next part.
- :class:`StopUpload` from any per-file hook: stop parsing. The current file is dropped,
  the files and fields received before are kept, ``upload_complete`` is called and the
  form is returned. The rest of the body is read and discarded (so the connection can
  be reused), unless ``StopUpload(connection_reset=True)``, which stops reading at once.

Any other exception (an :class:`~spoolup.UploadError` such as the 413 of
:class:`SizeLimitHandler` or the 415 of :class:`ContentTypeHandler`, or a bug)
interrupts the upload: ``upload_interrupted`` is called on every handler, every file
already received is closed (temp files removed) and the exception propagates.

**Instances or factories.** ``handlers=[...]`` takes handler instances or zero-argument
callables returning one (a class, a ``functools.partial``, a lambda). A factory is
called once per request, so ``handlers=[HashingHandler, SpooledFileHandler]`` gives
every request fresh handlers and is safe to share between concurrent requests; an
instance is used as it is and must serve one request at a time.

Handlers are synchronous. The async drivers call them in a worker thread (one at a
time, never concurrently), so a handler may block on disk or network I/O.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from spoolup._cleanup import SpoolFile
from spoolup._io import WRITE_BATCH, Batcher
from spoolup.errors import FileTooLarge, UnsupportedMediaType
from spoolup.files import FileInfo, UploadedFile
from spoolup.limits import Limits

__all__ = [
    "ContentTypeHandler",
    "FileInfo",
    "HandlerSpec",
    "HashingHandler",
    "MemoryFileHandler",
    "ProgressHandler",
    "SizeLimitHandler",
    "SkipFile",
    "SpooledFileHandler",
    "StopFutureHandlers",
    "StopUpload",
    "TemporaryFileHandler",
    "UploadContext",
    "UploadHandler",
    "default_handlers",
    "resolve_handlers",
]


class StopFutureHandlers(Exception):
    """Raised by ``new_file``: this handler takes the file, later handlers never see it."""


class SkipFile(Exception):
    """Raised by a per-file hook: drop the current file and carry on with the next part."""


class StopUpload(Exception):
    """Raised by a per-file hook: stop parsing, keep what was received before this file.

    With ``connection_reset=False`` (the default) the driver reads and discards the
    rest of the body; with ``True`` it stops reading at once.
    """

    def __init__(self, connection_reset: bool = False) -> None:
        super().__init__("upload stopped by a handler")
        self.connection_reset = connection_reset


@dataclass(frozen=True, slots=True)
class UploadContext:
    """What is known about the request before its body is read.

    Attributes:
        limits: the limits in force for this request.
        content_length: the declared body length, or ``None`` (chunked, unknown).
        content_type: the request's ``Content-Type`` (for a raw body: the file's).
    """

    limits: Limits
    content_length: int | None
    content_type: str | None


class UploadHandler:
    """Base class of every handler; each hook does nothing by default.

    The defaults make an observer: chunks are passed on, no file is returned. Subclass
    it and override what you need; see the module docstring for the order of calls,
    the control exceptions and the threading rules. A handler serves one request at a
    time; ``upload_started`` is the place to reset per-request state.
    """

    def upload_started(self, context: UploadContext) -> None:
        """Called once per request before any part, with the limits and declared length."""

    def new_file(self, info: FileInfo) -> None:
        """A file part begins. Raise :class:`StopFutureHandlers` to take it alone."""

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        """Bytes of the current file; ``offset`` is how many this handler got before.

        Return ``data`` (or other bytes) to pass them to the next handler, ``None`` to
        keep them. ``data`` may be anything from one byte to megabytes long.
        """
        return data

    def file_complete(self, size: int) -> UploadedFile | None:
        """The part ended after ``size`` bytes (as received by this handler).

        Return the :class:`UploadedFile` to own the file, or ``None`` to let the next
        handler answer. The file returned belongs to the form from then on.
        """
        return None

    def file_skipped(self) -> None:
        """The current file was dropped: release anything held for it."""

    def body_progress(self, received: int) -> None:
        """``received`` bytes of body were read so far. Only called when overridden."""

    def upload_complete(self) -> None:
        """The whole body was read and parsed (or a handler stopped it)."""

    def upload_interrupted(self) -> None:
        """The upload failed: release everything held, including a file in progress."""


HandlerSpec: TypeAlias = UploadHandler | Callable[[], UploadHandler]
"""A handler instance, or a factory called once per request to make one."""


def resolve_handlers(specs: Iterable[HandlerSpec] | None) -> list[UploadHandler]:
    """Turn ``handlers=`` into the chain for one request (the default when ``None``)."""
    if specs is None:
        return default_handlers()
    chain: list[UploadHandler] = []
    for spec in specs:
        handler: object = spec if isinstance(spec, UploadHandler) else spec()
        if not isinstance(handler, UploadHandler):
            msg = f"a handler factory returned {handler!r}, not an UploadHandler"
            raise TypeError(msg)
        chain.append(handler)
    return chain


def memory_limit(handlers: Sequence[UploadHandler]) -> int:
    """For a chain of one built-in handler that keeps small files in memory, the size up
    to which a file received in one piece may be made in memory at once, without the
    hooks (they would give the same file, and hold nothing between files); else -1.

    Internal: the receiver's fast path for thousands of small files. Read it after
    ``upload_started``, which sets a :class:`SpooledFileHandler`'s threshold.
    """
    if len(handlers) == 1:
        handler = handlers[0]
        if type(handler) is MemoryFileHandler:
            return sys.maxsize
        if type(handler) is SpooledFileHandler:
            return handler._threshold
    return -1


def default_handlers() -> list[UploadHandler]:
    """The default chain: one :class:`SpooledFileHandler`."""
    return [SpooledFileHandler()]


# -- storing handlers ----------------------------------------------------------


def _writev(fd: int, buffers: list[bytes | memoryview]) -> int:
    if hasattr(os, "writev"):
        return os.writev(fd, buffers)
    return os.write(fd, buffers[0])  # pragma: no cover - Windows has no writev


def _background_writer(spool: SpoolFile) -> Batcher:
    """Writes a temp file in a pool thread while the caller goes on parsing.

    Every byte goes through ``os.writev`` on the descriptor, one system call per batch
    of about 2 MiB (the GIL is released once, not once per chunk); the buffered file
    object is only used to read back, after a seek. The file is written back to disk
    in the background as it grows (``spool.sync``), so that saving a large file
    durably later has only its last megabytes left to flush.
    """
    fd = spool.file.fileno()
    wrote = spool.sync.wrote

    def write_all(batch: list[bytes]) -> None:
        todo: list[bytes | memoryview] = list(batch)
        size = 0
        while todo:
            written = _writev(fd, todo)
            size += written
            while todo and written >= len(todo[0]):
                written -= len(todo.pop(0))
            if written:
                todo[0] = memoryview(todo[0])[written:]
        wrote(size)

    return Batcher(write_all, batch_size=WRITE_BATCH, max_chunks=64, wait_start=True)


class _StoringHandler(UploadHandler):
    """Shared state of the built-in handlers that keep the bytes of a file."""

    def __init__(self, *, temp_dir: str | os.PathLike[str] | None = None) -> None:
        self.temp_dir = temp_dir
        self._info: FileInfo | None = None
        self._chunks: list[bytes] = []
        self._spool: SpoolFile | None = None
        self._writer: Batcher | None = None

    def _release(self) -> None:
        self._chunks.clear()
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def new_file(self, info: FileInfo) -> None:
        self._release()
        self._info = info
        raise StopFutureHandlers

    def _start_spool(self) -> Batcher:
        self._spool = spool = SpoolFile(dir=self.temp_dir)
        self._writer = writer = _background_writer(spool)
        return writer

    def _memory_file(self, info: FileInfo) -> UploadedFile:
        # One list for every file of the request, emptied after each.
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return UploadedFile.from_bytes(info, data)

    def _disk_file(self, info: FileInfo, size: int) -> UploadedFile:
        spool = self._spool
        writer = self._writer
        assert spool is not None
        assert writer is not None
        writer.finish()
        self._spool = None
        self._writer = None
        return UploadedFile.from_info(
            info, spool.file, size=size, path=spool.path, in_memory=False, spool=spool
        )

    def file_skipped(self) -> None:
        self._release()

    def upload_interrupted(self) -> None:
        self._release()


class MemoryFileHandler(_StoringHandler):
    """Keeps every file in memory; never touches the disk.

    Memory is bounded by ``Limits.max_file_size`` per file (and ``max_files``): set
    them to what you can hold. Takes the file (later handlers do not see it).
    """

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        self._chunks.append(data)
        return None

    def file_complete(self, size: int) -> UploadedFile | None:
        assert self._info is not None
        return self._memory_file(self._info)


class TemporaryFileHandler(_StoringHandler):
    """Writes every file to a temp file in ``temp_dir`` (default ``tempfile.gettempdir()``).

    The temp file is removed on close, unless it was moved away by ``save``.

    Writes happen in a pool thread, overlapping with parsing (see the module notes).
    Takes the file (later handlers do not see it).
    """

    def new_file(self, info: FileInfo) -> None:
        self._release()
        self._info = info
        self._start_spool()
        raise StopFutureHandlers

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        assert self._writer is not None
        self._writer.add(data)
        return None

    def file_complete(self, size: int) -> UploadedFile | None:
        assert self._info is not None
        return self._disk_file(self._info, size)


class SpooledFileHandler(_StoringHandler):
    """The default: a file stays in memory up to a threshold, then moves to a temp file.

    The decision is made on the bytes actually received, never on a declared size: a
    file of at most ``memory_threshold`` bytes (``Limits.memory_threshold`` unless
    given) stays in memory; at the first byte past it, what was held goes to a temp
    file and the rest follows there, written by a pool thread while parsing goes on.
    Temp files go to ``temp_dir`` (default ``tempfile.gettempdir()``). Takes the file
    (later handlers do not see it).
    """

    def __init__(
        self,
        memory_threshold: int | None = None,
        *,
        temp_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(temp_dir=temp_dir)
        self._fixed_threshold = memory_threshold
        self._threshold = (
            Limits().memory_threshold if memory_threshold is None else memory_threshold
        )
        self._held = 0

    def upload_started(self, context: UploadContext) -> None:
        if self._fixed_threshold is None:
            self._threshold = context.limits.memory_threshold

    def new_file(self, info: FileInfo) -> None:
        self._release()
        self._info = info
        self._held = 0
        raise StopFutureHandlers

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        writer = self._writer
        if writer is not None:
            writer.add(data)
            return None
        held = self._held + len(data)
        if held <= self._threshold:
            self._chunks.append(data)
            self._held = held
            return None
        writer = self._start_spool()
        for chunk in self._chunks:
            writer.add(chunk)
        self._chunks.clear()
        writer.add(data)
        return None

    def file_complete(self, size: int) -> UploadedFile | None:
        info = self._info
        assert info is not None
        if self._writer is None:
            return self._memory_file(info)
        return self._disk_file(info, size)


# -- observers -----------------------------------------------------------------


class HashingHandler(UploadHandler):
    """Hashes every file as it passes and fills ``UploadedFile.hashes`` with hex digests.

    ``algorithms`` are :mod:`hashlib` names (``"sha256"`` by default; ``"md5"``,
    ``"sha1"``, ``"blake2b"``, ...); an unknown name raises ``ValueError`` at once. Put
    it before the storing handler: it passes every chunk on.
    """

    def __init__(self, *algorithms: str) -> None:
        self.algorithms: tuple[str, ...] = algorithms or ("sha256",)
        for name in self.algorithms:
            hashlib.new(name)
        self._info: FileInfo | None = None
        self._hashers: list[Any] = []

    def new_file(self, info: FileInfo) -> None:
        self._info = info
        self._hashers = [hashlib.new(name) for name in self.algorithms]

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        for hasher in self._hashers:
            hasher.update(data)
        return data

    def file_complete(self, size: int) -> UploadedFile | None:
        assert self._info is not None
        for name, hasher in zip(self.algorithms, self._hashers, strict=True):
            self._info.hashes[name] = hasher.hexdigest()
        self._hashers = []
        return None

    def file_skipped(self) -> None:
        self._hashers = []

    def upload_interrupted(self) -> None:
        self._hashers = []


class SizeLimitHandler(UploadHandler):
    """Refuses any file larger than ``max_size`` bytes with :class:`FileTooLarge` (413).

    ``Limits.max_file_size`` already bounds every file; this one narrows it for a
    chain (an avatar field, say), raising the moment the limit is crossed.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._received = 0

    def new_file(self, info: FileInfo) -> None:
        self._received = 0

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        self._received += len(data)
        if self._received > self.max_size:
            raise FileTooLarge.for_limit("SizeLimitHandler.max_size", self.max_size, "file")
        return data


class ContentTypeHandler(UploadHandler):
    """Lets through only files whose type is in ``allowed``, judged by their bytes.

    ``allowed`` holds MIME types (``"image/png"``) or families (``"image/*"``). A file
    is refused with :class:`UnsupportedMediaType` (415) when its declared type is not
    allowed (checked before any byte), or when its first bytes (up to ``sniff_size``)
    do not carry the signature of an allowed type according to ``puremagic``. Files
    with no known signature (plain text, CSV) are refused unless
    ``require_signature=False``, in which case the declared type decides alone.

    Put it before the storing handler; it passes every chunk on at once and keeps a
    copy of at most ``sniff_size`` bytes. Needs ``puremagic`` (``spoolup[detect]``),
    imported when the handler is created.
    """

    def __init__(
        self,
        allowed: Iterable[str],
        *,
        sniff_size: int = 4096,
        require_signature: bool = True,
    ) -> None:
        try:
            import puremagic
        except ImportError as exc:  # pragma: no cover - puremagic is in the dev lock
            msg = "ContentTypeHandler needs puremagic: pip install 'spoolup[detect]'"
            raise ImportError(msg) from exc
        self._puremagic = puremagic
        self.allowed: frozenset[str] = frozenset(t.strip().lower() for t in allowed)
        self.sniff_size = sniff_size
        self.require_signature = require_signature
        self._info: FileInfo | None = None
        self._head = bytearray()
        self._judged = False
        self.detected: str | None = None
        """The type found in the last file's bytes, once judged (``None`` if unknown)."""

    def is_allowed(self, mime_type: str) -> bool:
        """True if ``mime_type`` matches an entry of :attr:`allowed`."""
        mime_type = mime_type.lower()
        if mime_type in self.allowed:
            return True
        family = mime_type.partition("/")[0]
        return f"{family}/*" in self.allowed

    def new_file(self, info: FileInfo) -> None:
        self._info = info
        self._head = bytearray()
        self._judged = False
        self.detected = None
        if info.content_type is not None and not self.is_allowed(info.content_type):
            raise UnsupportedMediaType(
                f"file {info.filename!r}: type {info.content_type} is not allowed"
            )

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        if not self._judged:
            self._head += data[: self.sniff_size - len(self._head)]
            if len(self._head) >= self.sniff_size:
                self._judge(whole=False)
        return data

    def file_complete(self, size: int) -> UploadedFile | None:
        if not self._judged:
            self._judge(whole=True)
        return None

    def _judge(self, *, whole: bool) -> None:
        self._judged = True
        info = self._info
        assert info is not None
        head = bytes(self._head)
        self._head = bytearray()
        matches: Sequence[Any] = []
        if head:
            try:
                matches = self._puremagic.magic_string(head)
            except self._puremagic.PureError:
                matches = []
        if not whole:
            # A signature at the end of the file cannot be judged on its first bytes.
            matches = [m for m in matches if m.offset >= 0]
        if matches:
            best = max(m.confidence for m in matches)
            types = [m.mime_type for m in matches if m.confidence == best and m.mime_type]
            self.detected = types[0] if types else None
            if any(self.is_allowed(t) for t in types):
                return
            what = f"looks like {self.detected}" if self.detected else "has an unknown type"
        elif not self.require_signature and info.content_type is not None:
            return
        else:
            what = "has no recognised signature"
        raise UnsupportedMediaType(f"file {info.filename!r} {what}, which is not allowed")


class ProgressHandler(UploadHandler):
    """Calls ``callback(received, expected)`` as the body is read.

    ``received`` counts body bytes read so far (boundaries and fields included);
    ``expected`` is the declared ``Content-Length``, or ``None`` when unknown. Called
    after each chunk or batch of chunks and once more when the upload completes; in
    the async drivers it runs in the worker thread, so keep it quick or hand off.
    """

    def __init__(self, callback: Callable[[int, int | None], object]) -> None:
        self.callback = callback
        self._expected: int | None = None
        self._received = 0

    def upload_started(self, context: UploadContext) -> None:
        self._expected = context.content_length
        self._received = 0

    def body_progress(self, received: int) -> None:
        self._received = received
        self.callback(received, self._expected)

    def upload_complete(self) -> None:
        self.callback(self._received, self._expected)
