"""Request bodies for the benchmarks: deterministic, generated in memory, already chunked.

Every benchmark module takes its bodies from here, so that the parser benchmark and the
end-to-end ones measure the same inputs. A :class:`Workload` is one multipart body cut
into chunks of a fixed size, with what a parser must report for it (how many parts, how
many bytes of part data), so that a benchmark can check that every parser did all the work.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BOUNDARY",
    "CHUNK_SIZE",
    "KiB",
    "MiB",
    "Part",
    "Workload",
    "big_file",
    "build",
    "byte_chunks",
    "crlf_flood",
    "header_flood",
    "hostile",
    "many_fields",
    "many_files",
    "near_miss_file",
    "near_misses",
]

KiB = 1024
MiB = 1024 * KiB
CHUNK_SIZE = 64 * KiB
BOUNDARY = b"----spoolupBenchBoundary7MA4YWxkTrZu0gW"


@dataclass(frozen=True, slots=True)
class Part:
    """One part to put in a body: its name, optional filename, extra header lines, data."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None
    extra_headers: bytes = b""

    def head(self) -> bytes:
        """The part's header block, up to and including the blank line."""
        disposition = f'Content-Disposition: form-data; name="{self.name}"'
        if self.filename is not None:
            disposition += f'; filename="{self.filename}"'
        lines = disposition.encode() + b"\r\n"
        if self.content_type is not None:
            lines += f"Content-Type: {self.content_type}\r\n".encode()
        return lines + self.extra_headers + b"\r\n"


@dataclass(frozen=True, slots=True)
class Workload:
    """One multipart body, cut into chunks, and what parsing it must yield.

    ``parts`` and ``data_bytes`` are the number of parts and the total bytes of part data
    (headers, delimiters, preamble and epilogue excluded): a parser that reports other
    numbers did not do the whole job.
    """

    name: str
    description: str
    chunks: tuple[bytes, ...]
    parts: int
    data_bytes: int
    boundary: bytes = BOUNDARY

    @property
    def content_type(self) -> str:
        """The request's ``Content-Type`` header value."""
        return f"multipart/form-data; boundary={self.boundary.decode()}"

    @property
    def size(self) -> int:
        """Bytes in the whole body."""
        return sum(len(chunk) for chunk in self.chunks)

    def rechunk(self, chunk_size: int) -> Workload:
        """The same body cut into chunks of ``chunk_size`` bytes."""
        body = b"".join(self.chunks)
        chunks = tuple(body[i : i + chunk_size] for i in range(0, len(body), chunk_size))
        return Workload(self.name, self.description, chunks, self.parts, self.data_bytes)


def build(
    name: str,
    description: str,
    parts: Iterable[Part],
    *,
    preamble: bytes = b"",
    epilogue: bytes = b"",
    chunk_size: int = CHUNK_SIZE,
    boundary: bytes = BOUNDARY,
) -> Workload:
    """Assemble ``parts`` into a multipart body and cut it into ``chunk_size`` chunks."""
    body = bytearray(preamble)
    count = data_bytes = 0
    for part in parts:
        if b"--" + boundary in part.data:
            raise ValueError(f"part {part.name!r} contains the boundary")
        body += b"--" + boundary + b"\r\n" + part.head() + part.data + b"\r\n"
        count += 1
        data_bytes += len(part.data)
    body += b"--" + boundary + b"--\r\n" + epilogue
    view = memoryview(body)
    chunks = tuple(bytes(view[i : i + chunk_size]) for i in range(0, len(body), chunk_size))
    view.release()
    return Workload(name, description, chunks, count, data_bytes, boundary)


def _random_bytes(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    # randbytes of more than 256 MiB overflows a C int of bits, so draw it in blocks.
    return b"".join(rng.randbytes(min(MiB, size - i)) for i in range(0, size, MiB))


def big_file(size: int = 256 * MiB) -> Workload:
    """One file of ``size`` random bytes: the raw data path."""
    data = _random_bytes(size, seed=1)
    part = Part("file", data, "big.bin", "application/octet-stream")
    return build("big_file", f"1 file of {_fmt(size)} random bytes", [part])


def many_files(count: int = 2000, size: int = 4 * KiB) -> Workload:
    """``count`` files of ``size`` random bytes each: the per-part cost of files."""
    data = _random_bytes(count * size, seed=2)
    parts = (
        Part(f"file{i}", data[i * size : (i + 1) * size], f"f{i}.bin", "application/octet-stream")
        for i in range(count)
    )
    return build("many_files", f"{count:,} files of {_fmt(size)}", parts)


def many_fields(count: int = 10_000, size: int = 20) -> Workload:
    """``count`` plain fields of ``size`` bytes each: the per-part cost of fields."""
    value = (b"v" * size)[:size]
    parts = (Part(f"field{i}", value) for i in range(count))
    return build("many_fields", f"{count:,} fields of {size} bytes", parts)


def near_misses(size: int, boundary: bytes = BOUNDARY) -> bytes:
    """``size`` bytes made only of near-miss delimiters: CRLF, ``--`` and growing prefixes
    of the boundary, each broken off before the boundary is complete."""
    unit = b"".join(b"\r\n--" + boundary[:k] + b"X" for k in range(len(boundary)))
    unit += b"\r\r\n\n-\r\n-X\r\n--\r\n"
    return (unit * (size // len(unit) + 1))[:size]


def near_miss_file(size: int = 16 * MiB, name: str = "near_miss_file") -> Workload:
    """One file of ``size`` bytes full of near-miss delimiters."""
    part = Part("file", near_misses(size), "near.bin", "application/octet-stream")
    return build(name, f"1 file of {_fmt(size)} of near-miss delimiters", [part])


def crlf_flood(size: int) -> Workload:
    """``size`` bytes of CR/LF: half before the first boundary, half as a file's data."""
    half = size // 2
    part = Part("file", b"\r\n" * (half // 2), "crlf.bin", "application/octet-stream")
    return build(
        "crlf_flood",
        f"{_fmt(size)} of CR/LF (preamble and file data)",
        [part],
        preamble=b"\r\n" * (half // 2),
    )


def header_flood(size: int) -> Workload:
    """One part whose header block holds ``size`` bytes of extra header lines."""
    line = b"X-Pad: " + b"h" * 25 + b"\r\n"
    part = Part("file", b"data", "h.bin", "text/plain", extra_headers=line * (size // len(line)))
    return build("header_flood", f"1 part with {_fmt(size)} of header lines", [part])


def byte_chunks(size: int) -> Workload:
    """One file of ``size`` random bytes fed one byte at a time: the per-call cost."""
    part = Part("file", _random_bytes(size, seed=3), "bytes.bin", "application/octet-stream")
    return build("byte_chunks", f"1 file of {_fmt(size)} in 1-byte chunks", [part], chunk_size=1)


def hostile(size: int) -> Sequence[Workload]:
    """The worst cases for linearity, ``size`` bytes each (1-byte chunks: ``size // 64``)."""
    return [
        crlf_flood(size),
        near_miss_file(size, name="near_miss_flood"),
        header_flood(size),
        byte_chunks(size // 64),
    ]


class ChunkStream:
    """A readable stream over the chunks: ``read(n)`` never crosses a chunk."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = iter(chunks)
        self._current = memoryview(b"")

    def read(self, size: int | None = -1) -> bytes:
        if not self._current:
            self._current = memoryview(next(self._chunks, b""))
        if size is None or size < 0:
            size = len(self._current)
        out, self._current = self._current[:size], self._current[size:]
        return bytes(out)


def _fmt(size: int) -> str:
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB} MiB"
    if size >= KiB and size % KiB == 0:
        return f"{size // KiB} KiB"
    return f"{size} B"
