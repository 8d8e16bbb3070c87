"""The storage interface: where kept uploads live, whatever the backend.

A backend subclasses :class:`Storage` and implements its abstract methods; everything
else (the one-call :meth:`Storage.write`, the ``a``-prefixed async twins, listing with
metadata) is built on them. Every backend promises:

- **Atomic writes.** An object appears under its key only when :meth:`ObjectWriter.commit`
  returns, whole; an aborted or failed write leaves nothing under the key, and the
  previous object under that key (if any) stays readable until the commit replaces it.
- **Checked keys.** Every key goes through :func:`validate_key` before it touches the
  backend: a key is a relative ``/``-separated path that cannot climb out of the
  backend's root, whoever wrote it.
- **Per-object metadata.** ``filename``, ``content_type``, ``size``, ``sha256``,
  ``created`` (the commit time) and free-form string ``metadata``, as an
  :class:`ObjectInfo`. The writer computes ``size`` and ``sha256`` itself.

Keys are checked with :func:`validate_key`, which raises :class:`InvalidKey`, a
:class:`~spoolup.MalformedRequest` (400): keys often come from a request (an id in a
URL path), and a server answers a bad one with 400 without more code. Metadata that a
backend cannot store (too long, bad names) raises :class:`InvalidMetadata` (400) for
the same reason: a file name comes from the client.

Failures of the backend itself are :class:`StorageError` (not an ``UploadError``: the
client did nothing wrong), with ``status`` 500, or :class:`ObjectNotFound` (404) and
:class:`InsufficientStorage` (507).

Adding a backend: implement :meth:`Storage.open_writer` (returning an
:class:`ObjectWriter` subclass), :meth:`Storage.open`, :meth:`Storage.stat`,
:meth:`Storage.list` and :meth:`Storage.delete`, and the five resumable-upload methods
(:meth:`Storage.begin_multipart` and the rest) if the backend serves tus, and
:meth:`Storage.move` if it can move an object without reading it back (the default
copies); run ``tests/storage/test_backend_suite.py`` against it.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import hashlib
import io
import re
import unicodedata
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import IO, BinaryIO, Self, TypeAlias

from spoolup.errors import MalformedRequest
from spoolup.headers import is_media_type

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_METADATA_SIZE",
    "InsufficientStorage",
    "InvalidKey",
    "InvalidMetadata",
    "ListPage",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectWriter",
    "PartAppender",
    "PartInfo",
    "Storage",
    "StorageError",
    "validate_key",
    "validate_metadata",
]

MAX_KEY_LENGTH = 1024
"""Bytes of a key, UTF-8 encoded (the S3 limit)."""

# A segment becomes a file name with a prefix and suffix (temp and metadata files):
# 200 bytes leave room under the usual 255-byte NAME_MAX.
MAX_SEGMENT_LENGTH = 200

MAX_METADATA_SIZE = 2048
"""Bytes of metadata names and encoded values of one object (the S3 user-metadata limit)."""

RESERVED_METADATA = frozenset({"filename", "sha256"})

_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")

WriteSource: TypeAlias = bytes | Iterable[bytes] | IO[bytes]
"""What :meth:`Storage.write` takes: bytes, an iterable of chunks or a binary file."""

_READ_SIZE = 1024 * 1024
_MAX_CONTENT_TYPE = 1024


# -- errors ----------------------------------------------------------------------------


class InvalidKey(MalformedRequest):
    """A storage key is not acceptable (400): empty, too long, absolute, ``..``, ..."""


class InvalidMetadata(MalformedRequest):
    """Object metadata cannot be stored (400): bad name, or too large for the backend."""


class StorageError(Exception):
    """The storage backend failed (500 by default); ``message`` says what and where."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ObjectNotFound(StorageError):
    """No object under this key (404)."""

    status = 404

    def __init__(self, key: str) -> None:
        super().__init__(f"no object under the key {key!r}")
        self.key = key


class InsufficientStorage(StorageError):
    """The backend is full (507)."""

    status = 507


# -- keys and metadata -------------------------------------------------------------------


def validate_key(key: object) -> str:
    """Return ``key`` if it is a safe storage key, else raise :class:`InvalidKey` (400).

    A key is a relative path of ``/``-separated segments: 1 to :data:`MAX_KEY_LENGTH`
    bytes of UTF-8, each segment 1 to 200 bytes; no leading ``/``, no empty segment
    (``a//b``, trailing ``/``), no backslash, no control character, and no segment
    that starts with ``.`` (so never ``.`` or ``..``; names starting with a dot are
    reserved for the backends' own files). The key is not normalised: what is
    returned is what was given.
    """
    if not isinstance(key, str):
        msg = f"a storage key must be a str, not {type(key).__name__}"
        raise InvalidKey(msg)
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey("a storage key must be valid Unicode (no lone surrogates)") from None
    if not encoded:
        raise InvalidKey("a storage key must not be empty")
    if len(encoded) > MAX_KEY_LENGTH:
        msg = f"a storage key must be at most {MAX_KEY_LENGTH} bytes, not {len(encoded)}"
        raise InvalidKey(msg)
    if "\\" in key:
        raise InvalidKey(f"a storage key must not contain a backslash: {key!r}")
    if any(unicodedata.category(c) == "Cc" for c in key):
        raise InvalidKey(f"a storage key must not contain control characters: {key!r}")
    for segment in key.split("/"):
        if not segment:
            msg = f"a storage key must be relative, without empty segments: {key!r}"
            raise InvalidKey(msg)
        if segment.startswith("."):
            msg = f"a storage key segment must not start with '.': {key!r}"
            raise InvalidKey(msg)
        if len(segment.encode("utf-8")) > MAX_SEGMENT_LENGTH:
            msg = f"a storage key segment must be at most {MAX_SEGMENT_LENGTH} bytes: {key!r}"
            raise InvalidKey(msg)
    return key


def validate_metadata(
    filename: str | None, content_type: str | None, metadata: Mapping[str, str] | None
) -> dict[str, str]:
    """Check per-object metadata and return the free-form part as a new dict.

    Names of free-form ``metadata`` are 1 to 64 characters of ``a-z``, ``0-9`` and
    ``-`` (what every S3 endpoint keeps), not ``filename`` or ``sha256`` (reserved);
    values are strings without control characters; empty values are dropped (S3
    does not keep them). Names and percent-encoded values together, with the filename
    and content type, stay within :data:`MAX_METADATA_SIZE` bytes. ``content_type`` is
    printable ASCII whose ``type/subtype`` is an RFC 9110 media type. Raises
    :class:`InvalidMetadata` (400) otherwise.
    """
    extra = dict(metadata or {})
    total = 0
    for name, value in extra.items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name):
            msg = f"metadata name {name!r} must be 1-64 of a-z, 0-9 and '-'"
            raise InvalidMetadata(msg)
        if name in RESERVED_METADATA:
            raise InvalidMetadata(f"metadata name {name!r} is reserved")
        if not isinstance(value, str):
            raise InvalidMetadata(f"metadata value of {name!r} must be a str")
        total += len(name) + len(encode_metadata_value(value))
        if any(unicodedata.category(c) == "Cc" for c in value):
            # CR or LF in a value could split a response header when it is served.
            raise InvalidMetadata(f"metadata value of {name!r} holds a control character")
    extra = {name: value for name, value in extra.items() if value}
    if content_type is not None and not _storable_type(content_type):
        msg = f"content type {content_type[:64]!r} is not a printable ASCII media type"
        raise InvalidMetadata(msg)
    for label, given in (("filename", filename), ("content-type", content_type)):
        if given is not None:
            total += len(label) + len(encode_metadata_value(given))
    if total > MAX_METADATA_SIZE:
        msg = f"metadata of {total} bytes exceeds {MAX_METADATA_SIZE} bytes (file name too long?)"
        raise InvalidMetadata(msg)
    return extra


def _storable_type(value: str) -> bool:
    """A ``Content-Type`` a backend can keep and a server send back: printable ASCII,
    bounded, whose ``type/subtype`` is an RFC 9110 media type (parameters allowed)."""
    if not (value.isascii() and value.isprintable() and len(value) <= _MAX_CONTENT_TYPE):
        return False
    return is_media_type(value.partition(";")[0].strip().lower())


def encode_metadata_value(value: str) -> str:
    """Percent-encode ``value`` into printable ASCII (for HTTP headers); reversible."""
    from urllib.parse import quote

    return quote(value, safe=" !#$&'()*+,/:;=?@[]^`{|}~")


def decode_metadata_value(value: str) -> str:
    """Undo :func:`encode_metadata_value`."""
    from urllib.parse import unquote

    return unquote(value, errors="replace")


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectInfo:
    """What a backend knows of one stored object.

    Attributes:
        key: the object's key (without any backend prefix).
        size: bytes.
        created: when the object was committed (timezone-aware, UTC).
        filename: the file name given at write time (the client's safe name), or None.
        content_type: the type given at write time, or None.
        sha256: hex digest of the bytes, or None when unknown.
        etag: an opaque validator that changes whenever the bytes change, or None.
        metadata: free-form string metadata given at write time.

    :meth:`Storage.list` may leave ``filename``, ``content_type``, ``sha256`` and
    ``metadata`` empty (S3 listings do not carry them); :meth:`Storage.stat` fills them.
    """

    key: str
    size: int
    created: datetime
    filename: str | None = None
    content_type: str | None = None
    sha256: str | None = None
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing: ``items`` in key order, and ``next_token`` for the next.

    ``next_token`` is ``None`` on the last page; pass it back as ``token=`` otherwise.
    """

    items: builtins.list[ObjectInfo]
    next_token: str | None


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One uploaded part of a resumable (multipart) upload.

    Attributes:
        number: the part number, from 1.
        size: bytes in the part.
        etag: the backend's tag for the part (needed by S3 to complete).
    """

    number: int
    size: int
    etag: str


# -- writers -----------------------------------------------------------------------------


class PartAppender(abc.ABC):
    """Streams bytes onto the end of a resumable upload (see :meth:`Storage.open_append`).

    ``size`` is the upload's size so far. :meth:`sync` makes every byte written so
    far durable; :meth:`close` releases the writer without syncing.
    """

    size: int

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Append ``data``."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Flush every byte written so far to stable storage."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the writer (what was written stays; nothing is synced)."""


class _StreamHash:
    """The sha256 of a stream, computed beside the writing once it passes 1 MiB.

    hashlib releases the GIL while it hashes a large buffer, so batches of about 1 MiB
    are hashed in one worker thread while the caller writes the next bytes: the hash
    costs no time on two cores. At most two batches wait, so memory stays bounded;
    a stream under 1 MiB is hashed inline and starts no thread.
    """

    _BATCH = 1024 * 1024
    _MAX_PENDING = 2

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._batch: builtins.list[bytes] = []
        self._batch_size = 0
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()

    def update(self, data: bytes) -> None:
        self._batch.append(data)
        self._batch_size += len(data)
        if self._batch_size >= self._BATCH:
            self._submit()

    def _submit(self) -> None:
        batch = self._batch
        self._batch = []
        self._batch_size = 0
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="spoolup-sha256")
        while len(self._pending) >= self._MAX_PENDING:
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(self._hash_all, batch))

    def _hash_all(self, batch: builtins.list[bytes]) -> None:
        update = self._hash.update
        for data in batch:
            update(data)

    def hexdigest(self) -> str:
        if self._executor is None:
            self._hash_all(self._batch)
            self._batch = []
            self._batch_size = 0
        elif self._batch:
            self._submit()
        while self._pending:
            self._pending.popleft().result()
        return self._hash.hexdigest()

    def close(self) -> None:
        self._batch = []
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class ObjectWriter(abc.ABC):
    """A push-style writer of one object: :meth:`write` chunks, then :meth:`commit`.

    Nothing is visible under the key until :meth:`commit` returns. :meth:`abort`
    discards everything written (temp file removed, multipart upload aborted); it is
    idempotent and safe after a failure. As a context manager, leaving the block
    without a commit (by an exception or not) aborts. A writer is used by one thread
    at a time. ``size`` and ``sha256`` are computed on the way.
    """

    def __init__(
        self,
        key: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.key = validate_key(key)
        self.filename = filename
        self.content_type = content_type
        self.metadata = validate_metadata(filename, content_type, metadata)
        self.size = 0
        self._hash = _StreamHash()
        self.done = False
        # False: the commit may skip flushing to stable storage (state that is
        # rewritten often and checkpointed durably elsewhere); backends may ignore it.
        self.durable = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (any length, may be empty) to the object being written.

        ``data`` is hashed and stored; a ``bytes`` object is kept by reference (not
        copied) until it is hashed, other buffers are copied first.
        """
        if self.done:
            raise StorageError(f"write to {self.key!r} after commit or abort")
        if not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)  # the hash may read it later: it must not change
        try:
            self._write(data)
        except BaseException:
            self.abort()
            raise
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes written so far."""
        return self._hash.hexdigest()

    def commit(self) -> ObjectInfo:
        """Make the object visible under its key, whole, and return its info.

        On failure the write is aborted and the error propagates.
        """
        if self.done:
            raise StorageError(f"commit of {self.key!r} after commit or abort")
        try:
            info = self._commit()
        except BaseException:
            self.abort()
            raise
        finally:
            self._hash.close()
        self.done = True
        return info

    def abort(self) -> None:
        """Discard everything written; nothing appears under the key. Idempotent."""
        if self.done:
            return
        self.done = True
        self._hash.close()
        self._abort()

    @abc.abstractmethod
    def _write(self, data: bytes) -> None:
        """Backend: store ``data`` (non-empty) after what was written before."""

    @abc.abstractmethod
    def _commit(self) -> ObjectInfo:
        """Backend: publish the object atomically and describe it."""

    @abc.abstractmethod
    def _abort(self) -> None:
        """Backend: release everything; must not raise for an ordinary cleanup failure."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class AsyncObjectWriter:
    """The async face of an :class:`ObjectWriter`: each call runs in a worker thread.

    Small chunks are gathered into batches of about 1 MiB before each hop to the
    thread, so that many tiny writes do not each pay for a thread switch.
    """

    _BATCH = 1024 * 1024

    def __init__(self, writer: ObjectWriter) -> None:
        self.writer = writer
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def write(self, data: bytes) -> None:
        """Append ``data``; the blocking write happens in a worker thread."""
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self._BATCH:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending = []
        self._pending_size = 0
        await asyncio.to_thread(self.writer.write, data)

    async def commit(self) -> ObjectInfo:
        """Write what is pending and commit (see :meth:`ObjectWriter.commit`)."""
        try:
            await self._flush()
        except BaseException:
            await self.abort()
            raise
        return await asyncio.to_thread(self.writer.commit)

    async def abort(self) -> None:
        """Discard everything (see :meth:`ObjectWriter.abort`)."""
        self._pending = []
        self._pending_size = 0
        await asyncio.to_thread(self.writer.abort)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.writer.done:
            await self.abort()


# -- the interface -------------------------------------------------------------------------


class Storage(abc.ABC):
    """Base class of the storage backends (:class:`~spoolup.storage.LocalStorage`, S3).

    Blocking methods do the work; the ``a``-prefixed twins run them in worker threads
    (:func:`asyncio.to_thread`), so the event loop never waits on the disk or network.
    A backend instance is safe to share between threads.
    """

    # -- to implement ---------------------------------------------------------------------

    @abc.abstractmethod
    def open_writer(
        self,
        key: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectWriter:
        """Start writing the object ``key``; see :class:`ObjectWriter`."""

    @abc.abstractmethod
    def open(self, key: str, *, start: int = 0, end: int | None = None) -> BinaryIO:
        """Open the object for reading; raises :class:`ObjectNotFound`.

        With ``start``/``end`` (``end`` exclusive, as a slice; ``None`` is the end of
        the object, and an ``end`` past it is cut to it) the stream holds only those
        bytes: position 0 is byte ``start`` of the object. The stream is seekable and
        must be closed. ``start < 0`` or ``end < start`` raise ``ValueError``.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Describe the object with all its metadata; raises :class:`ObjectNotFound`."""

    @abc.abstractmethod
    def list(self, prefix: str = "", *, limit: int = 1000, token: str | None = None) -> ListPage:
        """One page of at most ``limit`` objects whose key starts with ``prefix``.

        ``prefix`` is a plain string prefix (``"a/b"`` matches ``a/b/c`` and
        ``a/bc``); objects come in key order (some S3-compatible servers, SeaweedFS
        for one, list folder by folder: ``a/b`` before ``a-c``); ``token`` continues
        a listing from the page that returned it. Items may lack metadata (see
        :class:`ObjectInfo`).
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object and its metadata. Deleting a missing key is not an error."""

    # Resumable uploads (tus): parts may arrive over several requests, from several
    # processes. Parts are numbered from 1 and are at least ``min_part_size`` bytes,
    # except the last one.

    min_part_size: int = 1
    """Smallest size of a part that is not the last one."""

    def begin_multipart(
        self,
        key: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Start a resumable upload to ``key``; return its upload id (store it)."""
        raise NotImplementedError

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> PartInfo:
        """Store part ``number`` of the upload (uploading a number again replaces it).

        Keep the returned :class:`PartInfo` and complete with those: after a part
        was sent twice, some S3 servers (SeaweedFS) list both uploads of it.
        """
        raise NotImplementedError

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """The parts stored so far, by number; raises :class:`ObjectNotFound` if unknown."""
        raise NotImplementedError

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[PartInfo] | None = None,
        *,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Publish the object from its parts (all stored parts when ``parts`` is None).

        ``sha256`` is recorded as the object's digest when the caller knows it (the
        parts arrived in several processes, so the backend cannot hash them on the way).
        """
        raise NotImplementedError

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discard the upload and every part; unknown ids are not an error."""
        raise NotImplementedError

    appendable: bool = False
    """Whether :meth:`open_append` streams a resumable upload's bytes in place."""

    def open_append(self, key: str, upload_id: str, offset: int) -> PartAppender:
        """Append to the resumable upload from byte ``offset`` (backends whose uploads are
        one growing file; see :attr:`appendable`).

        Bytes past ``offset`` (written by a request that died before its offset was
        saved) are cut off first. Complete such an upload with one
        :class:`PartInfo` of the whole size. Raises :class:`StorageError` if the
        upload holds fewer than ``offset`` bytes.
        """
        raise NotImplementedError

    # -- moving ------------------------------------------------------------------------

    def move(
        self,
        src: str,
        dest: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Move the object ``src`` to the key ``dest`` and return the new object's info.

        ``dest`` appears atomically, whole (an object already there is replaced), and
        ``src`` is gone afterwards (unless it is ``dest``). ``filename``,
        ``content_type`` and ``metadata`` replace the source's when given (``None``
        keeps them); ``sha256``, when given, is recorded as the digest (the caller
        hashed the bytes), else the source's is kept. Raises :class:`ObjectNotFound`
        if ``src`` is missing.

        This default copies the bytes through this process (one read, one write, the
        digest computed on the way) and then deletes ``src``; the backends override it
        without moving the bytes through here (a rename, a server-side copy).
        """
        validate_key(dest)
        source = self.stat(src)
        with self.open(src) as stream:
            info = self.write(
                dest,
                stream,
                filename=source.filename if filename is None else filename,
                content_type=source.content_type if content_type is None else content_type,
                metadata=source.metadata if metadata is None else metadata,
            )
        if src != dest:
            self.delete(src)
        return info

    async def amove(
        self,
        src: str,
        dest: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """:meth:`move` in a worker thread."""
        return await asyncio.to_thread(
            self.move,
            src,
            dest,
            filename=filename,
            content_type=content_type,
            metadata=metadata,
            sha256=sha256,
        )

    # -- built on the above ---------------------------------------------------------------

    def write(
        self,
        key: str,
        data: WriteSource,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        durable: bool = True,
    ) -> ObjectInfo:
        """Write a whole object from bytes, an iterable of chunks or a binary file.

        Atomic: on any failure (including the source raising midway) nothing is
        left under ``key`` and the error propagates. ``durable=False`` lets a backend
        skip flushing to stable storage (the local one skips its fsyncs): the object
        is visible to every reader at once, but a power loss may bring back the
        previous one. For small state rewritten often and checkpointed elsewhere.
        """
        with self.open_writer(
            key, filename=filename, content_type=content_type, metadata=metadata
        ) as writer:
            writer.durable = durable
            for chunk in _chunks_of(data):
                writer.write(chunk)
            return writer.commit()

    def read_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """The object's bytes (or the ``start``/``end`` range) in memory."""
        with self.open(key, start=start, end=end) as stream:
            return stream.read()

    def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = 65536
    ) -> Iterable[bytes]:
        """Yield the object (or a range) in chunks of at most ``chunk_size`` bytes."""
        with self.open(key, start=start, end=end) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    def check(self) -> None:
        """Raise :class:`StorageError` unless the backend answers (for health checks)."""
        self.list(limit=1)

    def exists(self, key: str) -> bool:
        """True if an object is stored under ``key``."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def list_with_metadata(
        self, prefix: str = "", *, limit: int = 1000, token: str | None = None
    ) -> ListPage:
        """:meth:`list`, with every item described by :meth:`stat` (all metadata).

        An object deleted between the listing and its ``stat`` is left out.
        """
        page = self.list(prefix, limit=limit, token=token)
        items = []
        for item in page.items:
            try:
                items.append(self.stat(item.key))
            except ObjectNotFound:
                continue
        return ListPage(items, page.next_token)

    # -- async twins ---------------------------------------------------------------------

    async def aopen_writer(
        self,
        key: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncObjectWriter:
        """:meth:`open_writer`, with an async writer whose calls run in worker threads."""
        writer = await asyncio.to_thread(
            self.open_writer,
            key,
            filename=filename,
            content_type=content_type,
            metadata=metadata,
        )
        return AsyncObjectWriter(writer)

    async def awrite(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes] | Iterable[bytes],
        *,
        filename: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """:meth:`write` from bytes or a (sync or async) iterable of chunks, off the loop."""
        writer = await self.aopen_writer(
            key, filename=filename, content_type=content_type, metadata=metadata
        )
        async with writer:
            if isinstance(data, bytes):
                await writer.write(data)
            elif isinstance(data, AsyncIterable):
                async for chunk in data:
                    await writer.write(chunk)
            else:
                for chunk in data:
                    await writer.write(chunk)
            return await writer.commit()

    async def aopen(self, key: str, *, start: int = 0, end: int | None = None) -> BinaryIO:
        """:meth:`open` in a worker thread (read the stream with ``asyncio.to_thread``)."""
        return await asyncio.to_thread(self.open, key, start=start, end=end)

    async def aiter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """Yield the object (or a range) in chunks, each read in a worker thread."""
        stream = await self.aopen(key, start=start, end=end)
        try:
            while chunk := await asyncio.to_thread(stream.read, chunk_size):
                yield chunk
        finally:
            await asyncio.to_thread(stream.close)

    async def aread_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """:meth:`read_bytes` in a worker thread."""
        return await asyncio.to_thread(self.read_bytes, key, start=start, end=end)

    async def astat(self, key: str) -> ObjectInfo:
        """:meth:`stat` in a worker thread."""
        return await asyncio.to_thread(self.stat, key)

    async def acheck(self) -> None:
        """:meth:`check` in a worker thread."""
        await asyncio.to_thread(self.check)

    async def aexists(self, key: str) -> bool:
        """:meth:`exists` in a worker thread."""
        return await asyncio.to_thread(self.exists, key)

    async def alist(
        self, prefix: str = "", *, limit: int = 1000, token: str | None = None
    ) -> ListPage:
        """:meth:`list` in a worker thread."""
        return await asyncio.to_thread(self.list, prefix, limit=limit, token=token)

    async def alist_with_metadata(
        self, prefix: str = "", *, limit: int = 1000, token: str | None = None
    ) -> ListPage:
        """:meth:`list_with_metadata` in a worker thread."""
        return await asyncio.to_thread(self.list_with_metadata, prefix, limit=limit, token=token)

    async def adelete(self, key: str) -> None:
        """:meth:`delete` in a worker thread."""
        await asyncio.to_thread(self.delete, key)


def check_range(start: int, end: int | None) -> None:
    """Raise ``ValueError`` for a range no caller should ask for (a programming error)."""
    if start < 0 or (end is not None and end < start):
        msg = f"bad byte range start={start} end={end}"
        raise ValueError(msg)


def _chunks_of(data: WriteSource) -> Iterable[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    elif isinstance(data, io.IOBase) or hasattr(data, "read"):
        read = data.read
        while chunk := read(_READ_SIZE):
            yield chunk
    else:
        yield from data


class RangeReader(io.RawIOBase):
    """A read-only, seekable window ``[start, end)`` over a seekable binary file.

    Position 0 is byte ``start`` of the underlying file; reads stop at ``end``.
    Closing the window closes the file.
    """

    def __init__(self, file: BinaryIO, start: int, end: int) -> None:
        super().__init__()
        self._file = file
        self._start = start
        self._length = max(0, end - start)
        self._pos = 0

    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Read into ``buffer`` from the window; 0 at its end."""
        left = self._length - self._pos
        if left <= 0:
            return 0
        view = memoryview(buffer).cast("B")[:left]
        self._file.seek(self._start + self._pos)
        n = self._file.readinto(view)  # type: ignore[attr-defined]
        self._pos += n
        return int(n)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move within the window (positions past its end read nothing)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        pos = base + offset
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def tell(self) -> int:
        """The position in the window."""
        return self._pos

    def close(self) -> None:
        """Close the window and the file under it."""
        if not self.closed:
            self._file.close()
        super().close()
