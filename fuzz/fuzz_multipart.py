"""Fuzz the sans-IO parsers: any input must parse or raise ``UploadError``, nothing else.

Run ``python fuzz/fuzz_multipart.py`` (hypothesis, a few thousand inputs, a minute at
most), ``python fuzz/fuzz_multipart.py --examples 200000`` for a longer run, or, with
atheris installed, ``python fuzz/fuzz_multipart.py --atheris [libFuzzer options]`` for
coverage-guided fuzzing. Each input is also parsed in two chunkings that must agree.

A failure raises with the input that caused it; hypothesis prints it shrunk.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spoolup.errors import UploadError
from spoolup.headers import multipart_boundary, parse_options_header, safe_filename
from spoolup.limits import Limits
from spoolup.multipart import Event, MultipartParser, PartData
from spoolup.urlencoded import URLEncodedParser

BOUNDARY = b"fuzzBoundary"
LIMITS = Limits(max_header_size=512, max_headers=8, max_files=20, max_fields=20)


def _multipart(chunks: list[bytes]) -> list[Event]:
    parser = MultipartParser(BOUNDARY, limits=LIMITS)
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    parser.close()
    merged: list[Event] = []
    for event in events:
        if isinstance(event, PartData) and merged and isinstance(merged[-1], PartData):
            merged[-1] = PartData(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def _urlencoded(chunks: list[bytes]) -> list[object]:
    parser = URLEncodedParser(limits=LIMITS)
    fields: list[object] = []
    for chunk in chunks:
        fields.extend(parser.feed(chunk))
    fields.extend(parser.close())
    return fields


def _outcome(
    parse: Callable[[list[bytes]], list[object]] | Callable[[list[bytes]], list[Event]],
    chunks: list[bytes],
) -> object:
    try:
        return parse(chunks)
    except UploadError as exc:
        return type(exc)


def fuzz_one(data: bytes) -> None:
    """Parse ``data`` every way; fail on any exception but ``UploadError``."""
    step = 1 + (data[0] % 17 if data else 0)
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    for parse in (_multipart, _urlencoded):
        whole = _outcome(parse, [data])
        assert _outcome(parse, pieces) == whole, (parse.__name__, data)
    text = data.decode("latin-1")
    for call in (parse_options_header, multipart_boundary):
        with contextlib.suppress(UploadError):
            call(text)
    name = safe_filename(text)
    assert name not in ("", ".", "..")
    assert len(name.encode()) <= 255


_TOKENS = [
    b"--" + BOUNDARY,
    b"\r\n",
    b"--",
    b"\r",
    b"\n",
    b" ",
    b"Content-Disposition: form-data; name=",
    b'"a"',
    b'; filename="x/../y"',
    b"; filename*=utf-8''%C3%A9",
    b"Content-Type: text/plain; charset=utf-8",
    b"\\",
    b"&",
    b"=",
    b"%",
    b"%41",
    b"+",
    b"data",
    b"\xff",
]
_structured = st.lists(st.sampled_from(_TOKENS), max_size=40).map(b"".join)
_inputs = st.one_of(st.binary(max_size=400), _structured)


def run_hypothesis(examples: int) -> None:
    """Run ``examples`` generated inputs through :func:`fuzz_one`."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_inputs)
    def fuzz(data: bytes) -> None:
        fuzz_one(data)

    fuzz()


def run_atheris(argv: list[str]) -> None:  # pragma: no cover - needs atheris
    """Coverage-guided fuzzing with atheris (libFuzzer), if it is installed."""
    atheris = importlib.import_module("atheris")
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *argv], fuzz_one)
    atheris.Fuzz()


def main() -> None:
    """Parse the command line and fuzz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="hypothesis inputs to try")
    parser.add_argument("--atheris", action="store_true", help="use atheris (libFuzzer)")
    args, rest = parser.parse_known_args()
    if args.atheris:
        run_atheris(rest)
        return
    run_hypothesis(args.examples)
    sys.stdout.write(f"fuzzed {args.examples} inputs: every one parsed or raised UploadError\n")


if __name__ == "__main__":
    main()
