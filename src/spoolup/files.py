"""One interface for a received file, whether its bytes are in memory, in a temp file or elsewhere.

:class:`UploadedFile` is what the application sees; :class:`FileInfo` describes a file
part to the handlers while it is being received. A handler that stores the bytes
somewhere else (straight to storage) builds an ``UploadedFile`` over any readable,
seekable binary file object::

    UploadedFile.from_info(info, file=reader, size=size)            # path=None, not in memory
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from spoolup._cleanup import SpoolFile
from spoolup._io import COPY_SIZE, STREAM_CHUNK

__all__ = ["FileInfo", "UploadedFile"]

# What a closed in-memory file whose BytesIO was never made holds: any use but
# ``closed`` raises ValueError, as on the closed BytesIO it would have had.
_CLOSED = io.BytesIO()
_CLOSED.close()


@dataclass(slots=True)
class FileInfo:
    """What is known about a file when its first byte arrives; given to every handler.

    Handlers treat it as read-only, but for ``hashes`` (not frozen only because a
    frozen dataclass is several times slower to create, once per file part).

    Attributes:
        field_name: the form field the file was sent under ("" for a raw body).
        filename: the safe base name (no directory part, never empty, ``.`` or ``..``).
        raw_filename: the name as the client sent it, decoded, or ``None``.
        content_type: the declared type, lowercased, or ``None``.
        charset: the declared charset parameter, or ``None``.
        headers: the part's headers, names lowercased, in order.
        content_length: the declared length of the whole request body, if known.
        hashes: hex digests by algorithm name, filled by hashing handlers; the
            ``UploadedFile`` built from this info shares this dict.
    """

    field_name: str
    filename: str
    raw_filename: str | None = None
    content_type: str | None = None
    charset: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    content_length: int | None = None
    hashes: dict[str, str] = field(default_factory=dict)


class UploadedFile:
    """A received file: read it, iterate over it, save it; close it when done.

    The bytes are in memory (``in_memory``), in a temp file (``path`` is that file, and
    closing removes it), or in any other readable binary file object given by a
    handler. Reads and seeks are those of a binary file. Closing is idempotent; a temp
    file is also removed at garbage collection and at interpreter exit.

    The blocking methods have ``a``-prefixed async twins that run the work in a worker
    thread when it touches the disk (in-memory files are served directly).
    """

    __slots__ = (
        "_data",
        "_file",
        "_spool",
        "charset",
        "content_type",
        "field_name",
        "filename",
        "hashes",
        "headers",
        "in_memory",
        "path",
        "raw_filename",
        "size",
    )

    def __init__(
        self,
        file: BinaryIO,
        *,
        size: int,
        filename: str,
        field_name: str = "",
        raw_filename: str | None = None,
        content_type: str | None = None,
        charset: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        path: Path | None = None,
        in_memory: bool | None = None,
        hashes: dict[str, str] | None = None,
        spool: SpoolFile | None = None,
    ) -> None:
        """Wrap ``file`` (positioned anywhere; reads start from its beginning after a seek).

        ``spool`` is the temp file that ``file`` belongs to, removed on :meth:`close`;
        ``in_memory`` defaults to whether ``file`` is an :class:`io.BytesIO`.
        """
        self._file: BinaryIO | None = file
        self._data = b""
        self._spool = spool
        self.size = size
        self.filename = filename
        self.field_name = field_name
        self.raw_filename = raw_filename
        self.content_type = content_type
        self.charset = charset
        self.headers = headers
        self.path = path
        self.in_memory = isinstance(file, io.BytesIO) if in_memory is None else in_memory
        self.hashes = {} if hashes is None else hashes

    @classmethod
    def from_info(
        cls,
        info: FileInfo,
        file: BinaryIO,
        *,
        size: int,
        path: Path | None = None,
        in_memory: bool | None = None,
        spool: SpoolFile | None = None,
    ) -> UploadedFile:
        """Build the file described by ``info`` (sharing its ``hashes`` dict) over ``file``."""
        file.seek(0)
        return cls(
            file,
            size=size,
            filename=info.filename,
            field_name=info.field_name,
            raw_filename=info.raw_filename,
            content_type=info.content_type,
            charset=info.charset,
            headers=info.headers,
            path=path,
            in_memory=in_memory,
            hashes=info.hashes,
            spool=spool,
        )

    @classmethod
    def from_bytes(cls, info: FileInfo, data: bytes) -> UploadedFile:
        """An in-memory file holding ``data`` (not copied)."""
        return memory_file(
            data,
            info.field_name,
            info.filename,
            info.raw_filename,
            info.content_type,
            info.charset,
            info.headers,
            info.hashes,
        )

    def __repr__(self) -> str:
        where = "memory" if self.in_memory else (str(self.path) if self.path else "stream")
        return (
            f"<UploadedFile {self.field_name!r} {self.filename!r} "
            f"{self.content_type!r} size={self.size} in {where}>"
        )

    # -- reading ---------------------------------------------------------------

    @property
    def file(self) -> BinaryIO:
        """The underlying binary file object (a ``BytesIO``, a temp file or a handler's)."""
        file = self._file
        if file is None:
            # Made on first use: a form of many small files then holds one object less
            # per file (less to allocate, track, close and free) until a file is read.
            file = self._file = io.BytesIO(self._data)
            self._data = b""  # the BytesIO holds it now, and lets it go on close
        return file

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self.file.closed

    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes from the current position (all of the rest by default)."""
        return self.file.read(n)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the read position, as :meth:`io.IOBase.seek`; returns the new position."""
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        """The current read position."""
        return self.file.tell()

    def chunks(self, chunk_size: int = STREAM_CHUNK) -> Iterator[bytes]:
        """Yield the whole file from its beginning, ``chunk_size`` bytes at a time."""
        file = self.file
        file.seek(0)
        read = file.read
        while chunk := read(chunk_size):
            yield chunk

    # -- saving ----------------------------------------------------------------

    def save(self, dest: str | os.PathLike[str], *, fsync: bool = True) -> Path:
        """Store the file at ``dest`` atomically and return the final path.

        If ``dest`` is an existing directory, the file is saved in it under
        :attr:`filename`. A temp file on the same filesystem is moved by rename (no
        copy); otherwise the bytes are copied in chunks to a temp file beside ``dest``,
        flushed and renamed over it. Either way a reader of ``dest`` never sees a
        partial file; an existing ``dest`` is replaced. With ``fsync`` (the default)
        the data and the directory entry are on disk when this returns.

        The file keeps reading after a save. After a rename, :attr:`path` is ``dest``
        and :meth:`close` no longer removes anything; the saved file keeps the private
        mode (0600) of the temp file it was, as a copy does.
        """
        target = Path(dest)
        if target.is_dir():
            target /= self.filename
        spool = self._spool
        if spool is not None and not spool.removed:
            spool.file.flush()
            if fsync:
                # Most of the file was written back while it was received: this waits
                # for the last background sync (raising its error) and flushes the rest.
                spool.sync.wait()
                os.fsync(spool.file.fileno())
            try:
                spool.path.replace(target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
            else:
                spool.keep(target)
                self.path = target
                if fsync:
                    _fsync_dir(target.parent)
                return target
        return self._copy_to(target, fsync=fsync)

    def _copy_to(self, target: Path, *, fsync: bool) -> Path:
        # Before the temp file exists: on a closed file this raises, leaving nothing.
        position = self.file.tell()
        fd, name = tempfile.mkstemp(prefix=".spoolup-", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                for chunk in self.chunks(COPY_SIZE):
                    out.write(chunk)
                if fsync:
                    os.fsync(out.fileno())
            Path(name).replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(name).unlink()
            raise
        finally:
            self.file.seek(position)
        if fsync:
            _fsync_dir(target.parent)
        return target

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Release the file: a temp file is removed, memory is freed. Idempotent."""
        if self._spool is not None:
            self._spool.close()
        elif self._file is None:
            self._file = _CLOSED  # the BytesIO never made, as closed as it would be
            self._data = b""
        else:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- async twins -----------------------------------------------------------

    async def aread(self, n: int = -1) -> bytes:
        """:meth:`read` without blocking the event loop."""
        if self.in_memory:
            return self.file.read(n)
        return await asyncio.to_thread(self.file.read, n)

    async def aseek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """:meth:`seek` without blocking the event loop."""
        if self.in_memory:
            return self.file.seek(offset, whence)
        return await asyncio.to_thread(self.file.seek, offset, whence)

    async def achunks(self, chunk_size: int = STREAM_CHUNK) -> AsyncIterator[bytes]:
        """:meth:`chunks` without blocking the event loop (each read in a worker thread)."""
        await self.aseek(0)
        while chunk := await self.aread(chunk_size):
            yield chunk

    async def asave(self, dest: str | os.PathLike[str], *, fsync: bool = True) -> Path:
        """:meth:`save` in a worker thread."""
        return await asyncio.to_thread(self.save, dest, fsync=fsync)

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread when there is a file to remove."""
        if self._spool is None:
            self.close()
        else:
            await asyncio.to_thread(self.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def memory_file(  # noqa: PLR0917 - the slots of a file, set at once
    data: bytes,
    field_name: str,
    filename: str,
    raw_filename: str | None,
    content_type: str | None,
    charset: str | None,
    headers: tuple[tuple[str, str], ...],
    hashes: dict[str, str],
) -> UploadedFile:
    """An in-memory :class:`UploadedFile` holding ``data`` (internal; see ``from_bytes``)."""
    # The per-file cost counts with thousands of small files: set the slots directly,
    # and leave the BytesIO to be made when the file is first used (see ``file``).
    self = UploadedFile.__new__(UploadedFile)
    self._file = None
    self._data = data
    self._spool = None
    self.size = len(data)
    self.filename = filename
    self.field_name = field_name
    self.raw_filename = raw_filename
    self.content_type = content_type
    self.charset = charset
    self.headers = headers
    self.path = None
    self.in_memory = True
    self.hashes = hashes
    return self


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse to open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform dependent
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - platform dependent
        pass
    finally:
        os.close(fd)
