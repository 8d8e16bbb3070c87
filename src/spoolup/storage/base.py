"""The storage interface: where kept uploads live, whatever the backend.

A backend subclasses :class:`Storage` and implements its abstract methods; everything
else (the one-call :meth:`Storage.write`, the ``a``-prefixed async twins, listing with
metadata) is built on them. A backend that also keeps resumable uploads (what tus
needs) is a :class:`~spoolup.storage.resumable.ResumableStorage`. Every backend promises:

- **Atomic writes.** An object appears under its key only when :meth:`ObjectWriter.commit`
  returns, whole; an aborted or failed write leaves nothing under the key, and the
  previous object under that key (if any) stays readable until the commit replaces it.
- **Checked keys.** Every key goes through :func:`~spoolup.storage.meta.validate_key`
  before it touches the backend: a key is a relative ``/``-separated path that cannot
  climb out of the backend's root, whoever wrote it.
- **Per-object metadata.** An :class:`~spoolup.storage.meta.ObjectMeta` (``filename``,
  ``content_type``, free-form string ``metadata``) given at write time, and ``size``,
  ``sha256`` and ``created`` (the commit time) computed by the writer, read back as an
  :class:`~spoolup.storage.meta.ObjectInfo`.

The errors are in :mod:`spoolup.storage.errors`: bad keys and metadata are 400s,
backend failures 500, 404 or 507.

Adding a backend: implement :meth:`Storage.open_writer` (returning an
:class:`~spoolup.storage.writer.ObjectWriter` subclass), :meth:`Storage.open` (a
:class:`~spoolup.storage.ranges.RangeReader` subclass is the usual answer),
:meth:`Storage.stat`, :meth:`Storage.list` and :meth:`Storage.delete`, and
:meth:`Storage.move` if it can move an object without reading it back (the default
copies); subclass :class:`~spoolup.storage.resumable.ResumableStorage` instead if it
serves tus; run ``tests/storage/test_backend_suite.py`` against it.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import BinaryIO

from spoolup._io import STREAM_CHUNK
from spoolup.storage.errors import ObjectNotFound
from spoolup.storage.meta import ListPage, ObjectInfo, ObjectMeta, validate_key
from spoolup.storage.writer import AsyncObjectWriter, ObjectWriter, WriteSource, chunks_of

__all__ = ["Storage"]


class Storage(abc.ABC):
    """Base class of the storage backends (:class:`~spoolup.storage.LocalStorage`, S3).

    Blocking methods do the work; the ``a``-prefixed twins run them in worker threads
    (:func:`asyncio.to_thread`), so the event loop never waits on the disk or network.
    A backend instance is safe to share between threads.
    """

    # -- to implement ---------------------------------------------------------------------

    @abc.abstractmethod
    def open_writer(self, key: str, meta: ObjectMeta | None = None) -> ObjectWriter:
        """Start writing the object ``key``, described by ``meta``; see :class:`ObjectWriter`."""

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

    # -- moving ------------------------------------------------------------------------

    def move(
        self, src: str, dest: str, *, meta: ObjectMeta | None = None, sha256: str | None = None
    ) -> ObjectInfo:
        """Move the object ``src`` to the key ``dest`` and return the new object's info.

        ``dest`` appears atomically, whole (an object already there is replaced), and
        ``src`` is gone afterwards (unless it is ``dest``). ``meta`` replaces the
        source's file name, type and metadata when given (``None`` keeps them);
        ``sha256``, when given, is recorded as the digest (the caller hashed the bytes),
        else the source's is kept. Raises :class:`ObjectNotFound`
        if ``src`` is missing.

        This default copies the bytes through this process (one read, one write, the
        digest computed on the way) and then deletes ``src``; the backends override it
        without moving the bytes through here (a rename, a server-side copy).
        """
        validate_key(dest)
        source = self.stat(src)
        with self.open(src) as stream:
            info = self.write(dest, stream, source.meta if meta is None else meta)
        if src != dest:
            self.delete(src)
        return info

    async def amove(
        self, src: str, dest: str, *, meta: ObjectMeta | None = None, sha256: str | None = None
    ) -> ObjectInfo:
        """:meth:`move` in a worker thread."""
        return await asyncio.to_thread(self.move, src, dest, meta=meta, sha256=sha256)

    # -- built on the above ---------------------------------------------------------------

    def write(
        self,
        key: str,
        data: WriteSource,
        meta: ObjectMeta | None = None,
        *,
        durable: bool = True,
    ) -> ObjectInfo:
        """Write a whole object from bytes, an iterable of chunks or a binary file.

        Atomic: on any failure (including the source raising midway) nothing is
        left under ``key`` and the error propagates. ``durable=False`` lets a backend
        skip flushing to stable storage (the local one skips its fsyncs): the object
        is visible to every reader at once, but a power loss may bring back the
        previous one. For small state rewritten often and checkpointed elsewhere.
        """
        with self.open_writer(key, meta) as writer:
            writer.durable = durable
            for chunk in chunks_of(data):
                writer.write(chunk)
            return writer.commit()

    def read_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """The object's bytes (or the ``start``/``end`` range) in memory."""
        with self.open(key, start=start, end=end) as stream:
            return stream.read()

    def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = STREAM_CHUNK
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

    async def aopen_writer(self, key: str, meta: ObjectMeta | None = None) -> AsyncObjectWriter:
        """:meth:`open_writer`, with an async writer whose calls run in worker threads."""
        return AsyncObjectWriter(await asyncio.to_thread(self.open_writer, key, meta))

    async def awrite(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes] | Iterable[bytes],
        meta: ObjectMeta | None = None,
    ) -> ObjectInfo:
        """:meth:`write` from bytes or a (sync or async) iterable of chunks, off the loop."""
        writer = await self.aopen_writer(key, meta)
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
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = STREAM_CHUNK
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
