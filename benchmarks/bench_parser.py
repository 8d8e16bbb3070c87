"""The sans-IO multipart parser beside the peers' own parsers, on the same chunks.

Every parser gets the same body, already cut into 64 KiB chunks (1-byte chunks for the
``byte_chunks`` case), and a null sink that still touches every event: it counts the parts
and the bytes of part data. A run whose counts differ from the workload's is an error, so
no parser is timed doing less work than the others. Time is the best of a few runs
(``time.perf_counter``), the parsers taken in turn, stopping early when a slow parser has
used its time budget.

The peers, each through its own lowest public parsing API:

- python-multipart: ``python_multipart.MultipartParser`` with callbacks;
- multipart: ``multipart.PushMultipartParser``;
- streaming-form-data: ``StreamingFormDataParser`` with one counting target registered
  for every part name (one ``matches`` function: registering thousands of names one by one
  would measure its linear lookup of registered names, not its parsing);
- werkzeug: ``werkzeug.sansio.multipart.MultipartDecoder``;
- aiohttp: ``aiohttp.MultipartReader`` over a ``StreamReader`` fed every chunk, parts read
  with ``read_chunk``;
- falcon: ``falcon.media.MultipartFormHandler().deserialize`` over a stream that returns
  the chunks, parts read from ``part.stream``.

Limits are raised where a peer has them, so that every parser accepts every workload.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import python_multipart
from aiohttp import BodyPartReader, MultipartReader
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from falcon.media import MultipartFormHandler
from falcon.media.multipart import MultipartParseOptions
from multipart import MultipartSegment, PushMultipartParser
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from benchmarks import workloads
from benchmarks.report import Table
from benchmarks.workloads import ChunkStream, KiB, MiB, Workload
from spoolup import Limits
from spoolup.multipart import MultipartParser, PartData, PartStart

__all__ = [
    "CEILING",
    "KNOWN_FAILURES",
    "PACKAGES",
    "PARSERS",
    "TITLE",
    "Result",
    "Sizes",
    "collect",
    "linearity_table",
    "main_workloads",
    "measure",
    "run",
    "scan_ceiling",
    "throughput_table",
    "time_in_turn",
]

TITLE = "Parser benchmark: sans-IO multipart parsers, same bodies, same chunks"
PACKAGES = (
    "spoolup",
    "python-multipart",
    "multipart",
    "streaming-form-data",
    "werkzeug",
    "aiohttp",
    "falcon",
)
HUGE = 1 << 40
NO_LIMITS = Limits(
    max_body_size=HUGE,
    max_file_size=HUGE,
    max_files=HUGE,
    max_fields=HUGE,
    max_field_size=HUGE,
    max_header_size=HUGE,
    max_headers=HUGE,
)

Counts = tuple[int, int]
"""What a parser saw: (parts, bytes of part data)."""


def parse_spoolup(w: Workload) -> Counts:
    """spoolup's sans-IO ``MultipartParser``, limits raised to accept every workload."""
    parser = MultipartParser(w.boundary, limits=NO_LIMITS)
    parts = size = 0
    for chunk in w.chunks:
        for event in parser.feed(chunk):
            if type(event) is PartData:
                size += len(event.data)
            elif type(event) is PartStart:
                parts += 1
    parser.close()
    return parts, size


def parse_python_multipart(w: Workload) -> Counts:
    """python-multipart's ``MultipartParser`` with a callback for every event."""
    counts = [0, 0, 0]

    def on_part_begin() -> None:
        counts[0] += 1

    def on_part_data(data: bytes, start: int, end: int) -> None:
        counts[1] += end - start

    def on_header(data: bytes, start: int, end: int) -> None:
        counts[2] += end - start

    def on_event() -> None:
        pass

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_event,
        "on_header_field": on_header,
        "on_header_value": on_header,
        "on_header_end": on_event,
        "on_headers_finished": on_event,
        "on_end": on_event,
    }
    parser = python_multipart.MultipartParser(
        w.boundary, callbacks, max_header_count=HUGE, max_header_size=HUGE
    )
    for chunk in w.chunks:
        parser.write(chunk)
    parser.finalize()
    return counts[0], counts[1]


def parse_multipart(w: Workload) -> Counts:
    """multipart's ``PushMultipartParser``: segments, data chunks, ``None`` at each end."""
    parser = PushMultipartParser(w.boundary, max_header_size=HUGE, max_header_count=HUGE)
    parts = size = 0
    for chunk in w.chunks:
        for event in parser.parse(chunk):
            if event is None:
                continue
            if isinstance(event, MultipartSegment):
                parts += 1
            else:
                size += len(event)
    parser.close()
    return parts, size


class _CountingTarget(BaseTarget):  # type: ignore[misc]
    """A streaming-form-data target that counts parts and bytes, and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.parts = 0
        self.size = 0

    def on_start(self) -> None:
        self.parts += 1

    def on_data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)


def parse_streaming_form_data(w: Workload) -> Counts:
    """streaming-form-data's ``StreamingFormDataParser`` with one counting target."""
    target = _CountingTarget()
    parser = StreamingFormDataParser(headers={"Content-Type": w.content_type})
    parser.register("*", target, matches=lambda _registered, _name: True)
    for chunk in w.chunks:
        parser.data_received(chunk)
    return target.parts, target.size


def parse_werkzeug(w: Workload) -> Counts:
    """Werkzeug's sans-IO ``MultipartDecoder``, events pulled until it needs data."""
    decoder = MultipartDecoder(w.boundary, max_form_memory_size=None, max_parts=None)
    parts = size = 0

    def drain() -> bool:
        nonlocal parts, size
        while True:
            event = decoder.next_event()
            if isinstance(event, Data):
                size += len(event.data)
            elif isinstance(event, Field | File):
                parts += 1
            elif isinstance(event, NeedData):
                return False
            elif isinstance(event, Epilogue):
                return True

    for chunk in w.chunks:
        decoder.receive_data(chunk)
        drain()
    decoder.receive_data(None)
    if not drain():
        raise RuntimeError("werkzeug: no epilogue")
    return parts, size


def parse_aiohttp(w: Workload) -> Counts:
    """aiohttp's ``MultipartReader`` over a ``StreamReader`` fed every chunk."""
    return asyncio.run(_parse_aiohttp(w))


class _Protocol(BaseProtocol):
    # No transport to pause: every chunk is already in memory.
    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


async def _parse_aiohttp(w: Workload) -> Counts:
    stream = StreamReader(_Protocol(asyncio.get_running_loop()), 2**16)
    for chunk in w.chunks:
        stream.feed_data(chunk)
    stream.feed_eof()
    reader = MultipartReader(
        {"Content-Type": w.content_type}, stream, max_field_size=HUGE, max_headers=HUGE
    )
    parts = size = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise TypeError("nested multipart in a benchmark body")
        parts += 1
        part.name  # noqa: B018 - parsed lazily; every peer parses the disposition
        part.filename  # noqa: B018
        while data := await part.read_chunk(64 * KiB):
            size += len(data)
    return parts, size


def parse_falcon(w: Workload) -> Counts:
    """Falcon's ``MultipartFormHandler``; each part read from ``part.stream``."""
    options = MultipartParseOptions()
    options.max_body_part_count = 0  # no limit
    options.max_body_part_headers_size = HUGE
    handler = MultipartFormHandler(options)
    form = handler.deserialize(ChunkStream(w.chunks), w.content_type, w.size)
    parts = size = 0
    for part in form:
        parts += 1
        part.name  # noqa: B018 - parsed lazily; every peer parses the disposition
        part.filename  # noqa: B018
        while data := part.stream.read(64 * KiB):
            size += len(data)
    return parts, size


def scan_ceiling(w: Workload) -> Counts:
    """No parser: ``bytes.find`` for the delimiter over the chunks, the physical ceiling.

    Reports the parts and data bytes of the workload once it found one delimiter per
    part plus the closing one; it does no other work.
    """
    delimiter = b"--" + w.boundary
    keep = len(delimiter) - 1
    found = 0
    tail = b""
    for chunk in w.chunks:
        # A delimiter straddling two chunks lies within keep bytes of either side.
        found += (tail + chunk[:keep]).count(delimiter)
        find = chunk.find
        i = find(delimiter)
        while i != -1:
            found += 1
            i = find(delimiter, i + 1)
        tail = chunk[-keep:] if len(chunk) >= keep else (tail + chunk)[-keep:]
    if found != w.parts + 1:
        raise RuntimeError(f"ceiling scan found {found} delimiters, not {w.parts + 1}")
    return w.parts, w.data_bytes


CEILING = "bytes.find (ceiling)"
KNOWN_FAILURES = {
    ("werkzeug", "byte_chunks"): (
        "Werkzeug's MultipartDecoder adds a stray CR to a file's data when the body "
        "arrives in chunks of 1 to 3 bytes (data corruption in the peer, not a timing)"
    ),
}
"""Peer failures seen on this benchmark's own inputs, with the reason (shown in notes)."""

PARSERS: dict[str, Callable[[Workload], Counts]] = {
    "spoolup": parse_spoolup,
    "python-multipart": parse_python_multipart,
    "multipart": parse_multipart,
    "streaming-form-data": parse_streaming_form_data,
    "werkzeug": parse_werkzeug,
    "aiohttp": parse_aiohttp,
    "falcon": parse_falcon,
    CEILING: scan_ceiling,
}


@dataclass(frozen=True, slots=True)
class Result:
    """One parser on one workload: the best time, or why there is none."""

    parser: str
    workload: Workload
    seconds: float | None
    runs: int
    error: str | None = None

    @property
    def mb_per_s(self) -> float | None:
        """Throughput in MB/s (10**6 bytes) over the whole body, or ``None`` on error."""
        if self.seconds is None:
            return None
        return self.workload.size / self.seconds / 1e6


def _attempt(name: str, parse: Callable[[Workload], Counts], w: Workload) -> float | str:
    """One timed run: its seconds, or why it does not count."""
    start = time.perf_counter()
    try:
        counts = parse(w)
    except Exception as exc:  # a failing peer is a cell, not a crash
        return f"{type(exc).__name__}: {exc}"[:200]
    elapsed = time.perf_counter() - start
    if counts != (w.parts, w.data_bytes):
        return f"saw {counts[0]} parts / {counts[1]} bytes, not {w.parts} / {w.data_bytes}"
    return elapsed


Task = tuple[str, Callable[[Workload], Counts], Workload]
"""One thing to time: a parser's name, the parser, a workload."""


def time_in_turn(tasks: Sequence[Task], repeat: int, budget: float) -> list[Result]:
    """Best of up to ``repeat`` runs of each task, the tasks taken in turn.

    Taking them in turn, rather than one after the other, means that a busy spell on a
    shared machine slows every task alike instead of one. A task stops once it has spent
    ``budget`` seconds (after at least one run), or at its first run that raises or
    reports other counts than its workload's: that is its error.
    """
    best = [float("inf")] * len(tasks)
    spent = [0.0] * len(tasks)
    runs = [0] * len(tasks)
    errors: list[str | None] = [None] * len(tasks)
    for _ in range(repeat):
        for i, (name, parse, w) in enumerate(tasks):
            if errors[i] is not None or (runs[i] and spent[i] >= budget):
                continue
            outcome = _attempt(name, parse, w)
            runs[i] += 1
            if isinstance(outcome, str):
                errors[i] = outcome
            else:
                best[i] = min(best[i], outcome)
                spent[i] += outcome
    return [
        Result(name, w, None, n, error) if error else Result(name, w, t, n)
        for (name, _, w), t, n, error in zip(tasks, best, runs, errors, strict=True)
    ]


def measure(
    name: str, parse: Callable[[Workload], Counts], w: Workload, repeat: int, budget: float
) -> Result:
    """Best of ``repeat`` runs, fewer once ``budget`` seconds are spent; counts checked."""
    return time_in_turn([(name, parse, w)], repeat, budget)[0]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big the workloads are and how often each is timed."""

    big_file: int
    files: int
    fields: int
    near_miss: int
    hostile: int
    repeat: int
    budget: float


FULL = Sizes(
    big_file=256 * MiB,
    files=2000,
    fields=10_000,
    near_miss=16 * MiB,
    hostile=4 * MiB,
    repeat=7,
    budget=3.0,
)
QUICK = Sizes(
    big_file=1 * MiB,
    files=50,
    fields=200,
    near_miss=128 * KiB,
    hostile=32 * KiB,
    repeat=1,
    budget=0.0,
)


def main_workloads(sizes: Sizes) -> list[Callable[[], Workload]]:
    """The four throughput workloads, built lazily (the big file is large)."""
    return [
        lambda: workloads.big_file(sizes.big_file),
        lambda: workloads.many_files(sizes.files),
        lambda: workloads.many_fields(sizes.fields),
        lambda: workloads.near_miss_file(sizes.near_miss),
    ]


def _cell(result: Result) -> str:
    if result.mb_per_s is None:
        return "wrong" if (result.error or "").startswith("saw ") else "error"
    return f"{result.mb_per_s:,.0f}" if result.mb_per_s >= 10 else f"{result.mb_per_s:.2f}"


def _errors(results: Sequence[Result]) -> list[str]:
    notes: dict[tuple[str, str], str] = {}
    for r in results:
        if r.error:
            key = (r.parser, r.workload.name)
            reason = KNOWN_FAILURES.get(key, r.error)
            notes.setdefault(key, f"{r.parser} on {r.workload.name}: {reason}")
    return list(notes.values())


def throughput_table(results: Sequence[Result]) -> Table:
    """Rows: parsers (ceiling last), then spoolup / fastest peer; columns: workloads."""
    names = list(dict.fromkeys(r.workload.name for r in results))
    parsers = list(dict.fromkeys(r.parser for r in results))
    cell = {(r.parser, r.workload.name): r for r in results}
    table = Table("Throughput (MB/s, higher is better)", ["parser", *names])
    for parser in parsers:
        table.add(parser, *(_cell(cell[parser, n]) for n in names))
    ratios = []
    for n in names:
        ours = cell.get(("spoolup", n))
        peers = [
            r.mb_per_s
            for p in parsers
            if p not in ("spoolup", CEILING) and (r := cell[p, n]).mb_per_s is not None
        ]
        if ours is None or ours.mb_per_s is None or not peers:
            ratios.append("-")
        else:
            ratios.append(f"{ours.mb_per_s / max(peers):.2f}x")
    table.add("spoolup / fastest peer", *ratios)
    descriptions = {r.workload.name: r.workload.description for r in results}
    sizes = {r.workload.name: r.workload.size for r in results}
    table.notes += [f"{n}: {descriptions[n]} ({sizes[n]:,} bytes)" for n in names]
    table.notes += _errors(results)
    return table


def linearity_table(small: Sequence[Result], large: Sequence[Result]) -> Table:
    """For each hostile workload: MB/s at size N, and time(2N) / time(N) (about 2 is linear)."""
    names = list(dict.fromkeys(r.workload.name for r in small))
    parsers = list(dict.fromkeys(r.parser for r in small))
    at_n = {(r.parser, r.workload.name): r for r in small}
    at_2n = {(r.parser, r.workload.name): r for r in large}
    columns = ["parser"]
    for n in names:
        columns += [f"{n} MB/s", f"{n} 2N/N"]
    table = Table("Linearity on hostile inputs (time at 2N / time at N; 2.0 is linear)", columns)
    for parser in parsers:
        cells = []
        for n in names:
            one, two = at_n[parser, n], at_2n[parser, n]
            cells.append(_cell(one))
            if one.seconds is None or two.seconds is None:
                cells.append("-")
            else:
                cells.append(f"{two.seconds / one.seconds:.2f}")
        table.add(parser, *cells)
    descriptions = {r.workload.name: r.workload.description for r in small}
    table.notes += [f"{n} at N: {descriptions[n]}" for n in names]
    table.notes += _errors([*small, *large])
    return table


def collect(
    sizes: Sizes, parsers: dict[str, Callable[[Workload], Counts]] = PARSERS
) -> tuple[list[Result], list[Result], list[Result]]:
    """Time every parser on every workload: (throughput, hostile at N, hostile at 2N)."""

    def each(w: Workload) -> list[Result]:
        gc.collect()  # once per workload: what the last one left is not charged to this one
        tasks = [(name, parse, w) for name, parse in parsers.items()]
        return time_in_turn(tasks, sizes.repeat, sizes.budget)

    # One untimed run each first, so that no first timing pays for lazy set-up.
    each(workloads.many_files(3, 100))
    main: list[Result] = []
    for build in main_workloads(sizes):
        main += each(build())
    small: list[Result] = []
    large: list[Result] = []
    pairs = zip(workloads.hostile(sizes.hostile), workloads.hostile(2 * sizes.hostile), strict=True)
    for at_n, at_2n in pairs:
        gc.collect()
        for name, parse in parsers.items():
            # More runs than for throughput: the ratio matters more than the speed.
            one, two = time_in_turn(
                [(name, parse, at_n), (name, parse, at_2n)], 2 * sizes.repeat, sizes.budget
            )
            small.append(one)
            large.append(two)
    return main, small, large


def run(quick: bool) -> list[Table]:
    """Run the parser benchmark; ``quick`` uses tiny sizes and one run each."""
    sizes = QUICK if quick else FULL
    main, small, large = collect(sizes)
    throughput = throughput_table(main)
    throughput.notes.append(
        f"Best of up to {sizes.repeat} runs (fewer past {sizes.budget:g} s per cell); "
        "chunks of 64 KiB; MB = 10**6 bytes of body."
    )
    return [throughput, linearity_table(small, large)]
