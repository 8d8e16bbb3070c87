"""Readers of a byte range ``[start, end)`` of an object: one base, three sources.

:class:`RangeReader` is a read-only, seekable raw stream over a window of known length;
it keeps the position and the bounds, and a subclass only reads bytes at a position
(:meth:`RangeReader._read_at`) and releases its source. :class:`FileRangeReader` reads
a local file, :class:`LazyRangeReader` whatever stream an opener gives on the first
read (the storage handlers' stored files); the S3 backend has its own subclass.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["FileRangeReader", "LazyRangeReader", "RangeReader", "check_range"]


def check_range(start: int, end: int | None) -> None:
    """Raise ``ValueError`` for a range no caller should ask for (a programming error)."""
    if start < 0 or (end is not None and end < start):
        msg = f"bad byte range start={start} end={end}"
        raise ValueError(msg)


class RangeReader(io.RawIOBase):
    """A read-only, seekable window of ``length`` bytes; position 0 is its first byte.

    Subclasses implement :meth:`_read_at` and may override :meth:`_moved` (the
    position changed by a seek) and :meth:`_release` (called once, at close).
    """

    def __init__(self, length: int) -> None:
        super().__init__()
        self._length = max(0, length)
        self._pos = 0

    def _read_at(self, pos: int, view: memoryview) -> int:
        """Read into ``view`` (never empty, never past the window) the bytes at ``pos``."""
        raise NotImplementedError

    def _moved(self, old: int, new: int) -> None:
        """The position moved from ``old`` to ``new`` by a seek (a no-op by default)."""

    def _release(self) -> None:
        """Release the source (a no-op by default)."""

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
        with memoryview(buffer) as raw, raw.cast("B") as view:
            n = self._read_at(self._pos, view[:left])
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move within the window (positions past its end read nothing)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        pos = base + offset
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        if pos != self._pos:
            self._moved(self._pos, pos)
            self._pos = pos
        return pos

    def tell(self) -> int:
        """The position in the window."""
        return self._pos

    def close(self) -> None:
        """Close the window and release its source."""
        if not self.closed:
            self._release()
        super().close()


class FileRangeReader(RangeReader):
    """The window ``[start, end)`` of a seekable binary file; closing it closes the file."""

    def __init__(self, file: BinaryIO, start: int, end: int) -> None:
        super().__init__(end - start)
        self._file = file
        self._start = start

    def _read_at(self, pos: int, view: memoryview) -> int:
        self._file.seek(self._start + pos)
        return int(self._file.readinto(view))  # type: ignore[attr-defined]

    def _release(self) -> None:
        self._file.close()


class LazyRangeReader(RangeReader):
    """``length`` bytes of the stream ``opener()`` returns, opened on the first read.

    An unread file costs no request. The stream must be seekable; closing the reader
    closes it.
    """

    def __init__(self, opener: Callable[[], BinaryIO], length: int) -> None:
        super().__init__(length)
        self._opener = opener
        self._stream: BinaryIO | None = None

    def _read_at(self, pos: int, view: memoryview) -> int:
        stream = self._stream
        if stream is None:
            stream = self._stream = self._opener()
            stream.seek(pos)
        readinto = getattr(stream, "readinto", None)
        if readinto is not None:
            return int(readinto(view))
        data = stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _moved(self, old: int, new: int) -> None:
        if self._stream is not None:
            self._stream.seek(new)

    def _release(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
