"""Writers of one object: push chunks, then commit atomically (or abort).

A backend subclasses :class:`ObjectWriter` and implements ``_write``, ``_commit`` and
``_abort``; the base class checks the key and metadata, counts the size and computes
the sha256 beside the writing (in :func:`spoolup._io.io_pool`, so the hash costs no
time on two cores). :class:`AsyncObjectWriter` is its async face.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
from collections.abc import Iterable
from types import TracebackType
from typing import IO, Self, TypeAlias

from spoolup._io import BATCH_SIZE, READ_SIZE, Batcher
from spoolup.storage.errors import StorageError
from spoolup.storage.meta import NO_META, ObjectInfo, ObjectMeta, validate_key

__all__ = ["AsyncObjectWriter", "ObjectWriter", "WriteSource"]

WriteSource: TypeAlias = bytes | Iterable[bytes] | IO[bytes]
"""What :meth:`Storage.write` takes: bytes, an iterable of chunks or a binary file."""


class _StreamHash:
    """The sha256 of a stream, computed in the I/O pool once it passes one batch.

    hashlib releases the GIL while it hashes a large buffer, so batches are hashed in
    a pool thread while the caller writes the next bytes; a stream under one batch is
    hashed inline and uses no thread.
    """

    __slots__ = ("_batcher", "_hash")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._batcher = Batcher(self._hash_all)

    def _hash_all(self, batch: list[bytes]) -> None:
        update = self._hash.update
        for data in batch:
            update(data)

    def update(self, data: bytes) -> None:
        self._batcher.add(data)

    def hexdigest(self) -> str:
        self._batcher.finish()
        return self._hash.hexdigest()

    def close(self) -> None:
        self._batcher.cancel()


class ObjectWriter(abc.ABC):
    """A push-style writer of one object: :meth:`write` chunks, then :meth:`commit`.

    Nothing is visible under the key until :meth:`commit` returns. :meth:`abort`
    discards everything written (temp file removed, multipart upload aborted); it is
    idempotent and safe after a failure. As a context manager, leaving the block
    without a commit (by an exception or not) aborts. A writer is used by one thread
    at a time. ``size`` and ``sha256`` are computed on the way; ``meta`` is the
    checked :class:`~spoolup.storage.meta.ObjectMeta` it was opened with.
    """

    def __init__(self, key: str, meta: ObjectMeta | None = None) -> None:
        self.key = validate_key(key)
        self.meta = NO_META if meta is None else meta.checked()
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

    Small chunks are gathered into batches of :data:`~spoolup._io.BATCH_SIZE` before each hop to the
    thread, so that many tiny writes do not each pay for a thread switch.
    """

    def __init__(self, writer: ObjectWriter) -> None:
        self.writer = writer
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def write(self, data: bytes) -> None:
        """Append ``data``; the blocking write happens in a worker thread."""
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= BATCH_SIZE:
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


def chunks_of(data: WriteSource) -> Iterable[bytes]:
    """The chunks of a :data:`WriteSource`; a file is read ``READ_SIZE`` bytes at a time."""
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    elif hasattr(data, "read"):
        read = data.read
        while chunk := read(READ_SIZE):
            yield chunk
    else:
        yield from data
