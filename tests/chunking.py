"""Chunkings of a body, and event collection, shared by every parser test.

A sans-IO parser must give the same result however the body is cut: whole, one byte
at a time, split in two at every position, and cut at random. :func:`chunkings` yields
all of them with readable ids; :func:`collect_events` and :func:`collect_fields` feed a
parser and return a normalised result (consecutive ``PartData`` merged, empty data
dropped) so that two chunkings can be compared with ``==``; :func:`outcome` turns an
error into a comparable value too.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial

from spoolup.errors import UploadError
from spoolup.limits import Limits
from spoolup.multipart import Event, MultipartParser, PartData
from spoolup.urlencoded import Field, URLEncodedParser

BOUNDARY = "----spoolupTestBoundary7MA4YWxk"

# How much longer twice the input may take (a quadratic path takes four times), plus
# seconds of timer noise. Only ratios are checked, never a fixed budget: a busy machine
# slows both runs alike, and CPU time leaves other processes out.
LINEAR_RATIO = 3.0
LINEAR_SLACK = 0.05

# Above this size, "split at every position" takes every STRIDE-th position only, so
# that a test over a large body stays quick.
EVERY_SPLIT_MAX = 2048


def best_time(run: Callable[[], object], repeats: int = 3) -> float:
    """The least CPU time of a few runs: other processes on the machine do not count."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def assert_linear(single: float, double: float, what: str = "") -> None:
    """Assert that twice the input took about twice the time ``single`` took, not four."""
    assert double < LINEAR_RATIO * single + LINEAR_SLACK, (
        f"{what}: {single:.3f}s, then {double:.3f}s for twice the input"
    )


def random_chunks(body: bytes, rng: random.Random, max_size: int = 64) -> list[bytes]:
    """Cut ``body`` into chunks of random sizes from 1 to ``max_size`` (empty chunks too)."""
    chunks: list[bytes] = []
    pos = 0
    while pos < len(body):
        size = rng.randint(0, max_size)
        chunks.append(body[pos : pos + size])
        pos += size
    return chunks


def chunkings(body: bytes, *, randoms: int = 8, seed: int = 0) -> Iterator[tuple[str, list[bytes]]]:
    """Yield ``(id, chunks)``: whole, bytewise, every two-way split, and random cuts."""
    yield "whole", [body]
    yield "bytewise", [body[i : i + 1] for i in range(len(body))]
    stride = 1 if len(body) <= EVERY_SPLIT_MAX else len(body) // EVERY_SPLIT_MAX + 1
    for pos in range(0, len(body) + 1, stride):
        yield f"split@{pos}", [body[:pos], body[pos:]]
    rng = random.Random(seed)
    for k in range(randoms):
        max_size = rng.choice((3, 17, 64, 1000))
        yield f"random{k}/{max_size}", random_chunks(body, rng, max_size)


def merge_events(events: Iterable[Event]) -> list[Event]:
    """Merge consecutive ``PartData`` events into one and drop empty ones."""
    merged: list[Event] = []
    pending: list[bytes] = []
    for event in events:
        if isinstance(event, PartData):
            pending.append(event.data)
            continue
        if pending and any(pending):
            merged.append(PartData(b"".join(pending)))
        pending = []
        merged.append(event)
    if pending and any(pending):
        merged.append(PartData(b"".join(pending)))
    return merged


def collect_events(parser: MultipartParser, chunks: Iterable[bytes]) -> list[Event]:
    """Feed every chunk, close the parser, and return the normalised events."""
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    parser.close()
    return merge_events(events)


def collect_fields(parser: URLEncodedParser, chunks: Iterable[bytes]) -> list[Field]:
    """Feed every chunk, close the parser, and return every field in order."""
    fields: list[Field] = []
    for chunk in chunks:
        fields.extend(parser.feed(chunk))
    fields.extend(parser.close())
    return fields


def multipart_events(
    chunks: Iterable[bytes], boundary: str = BOUNDARY, limits: Limits | None = None
) -> list[Event]:
    """Parse ``chunks`` with a fresh :class:`MultipartParser` and normalise the events."""
    parser = MultipartParser(boundary, limits=limits or Limits())
    return collect_events(parser, chunks)


Outcome = tuple[str, object]


def outcome(run: Callable[[], Sequence[object]]) -> Outcome:
    """``("ok", result)`` or ``("error", error class)``: comparable across chunkings.

    Only :class:`UploadError` is caught: anything else escaping is a test failure.
    """
    try:
        return "ok", list(run())
    except UploadError as exc:
        return "error", type(exc)


def same_under_all_chunkings(
    body: bytes,
    parse: Callable[[list[bytes]], Sequence[object]],
    *,
    randoms: int = 8,
    seed: int = 0,
) -> Outcome:
    """Parse ``body`` under every chunking, assert all agree, and return the outcome."""
    expected = outcome(partial(parse, [body]))
    for chunking_id, chunks in chunkings(body, randoms=randoms, seed=seed):
        got = outcome(partial(parse, chunks))
        assert got == expected, f"chunking {chunking_id} gave {got!r}, whole gave {expected!r}"
    return expected


def encode_part(
    name: str,
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> tuple[list[tuple[str, str]], bytes]:
    """The headers and data of one part, quoted the way browsers quote them."""
    disposition = f'form-data; name="{_quote(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quote(filename)}"'
    headers = [("Content-Disposition", disposition)]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    headers.extend(extra)
    return headers, data


def encode_body(
    parts: Iterable[tuple[Sequence[tuple[str, str]], bytes]],
    boundary: str = BOUNDARY,
    *,
    preamble: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    """A ``multipart/form-data`` body from ``(headers, data)`` parts."""
    delimiter = b"--" + boundary.encode()
    out = [preamble]
    for headers, data in parts:
        out.append(delimiter + b"\r\n")
        for key, value in headers:
            out.append(f"{key}: {value}\r\n".encode())
        out.append(b"\r\n" + data + b"\r\n")
    out.append(delimiter + b"--\r\n" + epilogue)
    return b"".join(out)


def _quote(value: str) -> str:
    # The WHATWG HTML rule for multipart/form-data names and filenames, plus the
    # backslash escape of RFC 9110 quoted strings (which the parser reads).
    value = value.replace("\\", "\\\\")
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")
