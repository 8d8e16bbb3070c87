"""The range readers: one window over a file, one opened lazily from any stream."""

from __future__ import annotations

import io
from typing import BinaryIO

import pytest

from spoolup.storage.ranges import FileRangeReader, LazyRangeReader


class _ReadOnly:
    """A seekable stream with ``read`` but no ``readinto`` (some Django storages' files)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)
        self.closed_count = 0

    def read(self, n: int) -> bytes:
        return self._inner.read(n)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(pos, whence)

    def close(self) -> None:
        self.closed_count += 1


@pytest.mark.parametrize("with_readinto", [True, False])
def test_lazy_reader_opens_on_first_read_and_reads_the_window(with_readinto: bool) -> None:
    data = bytes(range(256)) * 40
    opened: list[object] = []

    def opener() -> BinaryIO:
        stream: object = io.BytesIO(data) if with_readinto else _ReadOnly(data)
        opened.append(stream)
        return stream  # type: ignore[return-value]

    reader = io.BufferedReader(LazyRangeReader(opener, 5000), buffer_size=64)
    assert opened == []  # an unread file costs nothing
    reader.seek(1000)
    assert opened == []
    assert reader.read(10) == data[1000:1010]
    assert len(opened) == 1
    reader.seek(4990)
    assert reader.read() == data[4990:5000]  # never past the window
    reader.seek(3)
    assert reader.read(4) == data[3:7]
    reader.close()
    stream = opened[0]
    assert stream.closed if isinstance(stream, io.BytesIO) else stream.closed_count == 1  # type: ignore[attr-defined]


def test_unread_lazy_reader_closes_without_opening() -> None:
    def opener() -> BinaryIO:
        raise AssertionError("opened")

    LazyRangeReader(opener, 10).close()


def test_file_window() -> None:
    reader = FileRangeReader(io.BytesIO(b"0123456789"), 2, 6)
    assert reader.read() == b"2345"
    reader.seek(-1, io.SEEK_END)
    assert reader.read() == b"5"
