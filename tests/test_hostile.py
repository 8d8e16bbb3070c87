"""A catalogue of hostile inputs, drawn from published advisories against form parsers.

Each case names the advisory it comes from, builds a body of a given size, and states
the exact outcome: the error class (and limit) it must raise, or the form it must parse
to. Every case is checked three ways:

- on a small body, under every chunking (whole, bytewise, every split, random);
- on about 4 MB, fed in 64 KiB chunks, with its exact outcome;
- at twice that size, where it may take at most about twice the time (linear, never
  quadratic), with some slack for timer noise. Times are CPU times (the best of
  three), so that other processes on the machine do not count. No fixed time budget
  is checked: a loaded machine would fail it by chance, and the ratio is what catches
  a quadratic path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import pytest

from spoolup.errors import (
    FileTooLarge,
    MalformedRequest,
    RequestTooLarge,
    TooManyParts,
    UploadError,
)
from spoolup.headers import multipart_boundary, parse_options_header
from spoolup.limits import Limits
from spoolup.multipart import Event, MultipartParser, PartData, PartStart
from spoolup.urlencoded import URLEncodedParser
from tests.chunking import (
    BOUNDARY,
    LINEAR_RATIO,
    LINEAR_SLACK,
    assert_linear,
    best_time,
    collect_events,
    collect_fields,
    encode_body,
    encode_part,
    same_under_all_chunkings,
)

B = BOUNDARY.encode()
DELIM = b"\r\n--" + B
HEAD = b"--" + B + b"\r\n"
FIELD_A = encode_body([encode_part("a", b"1")])  # a small valid body
FILE_HEAD = HEAD + b'Content-Disposition: form-data; name="f"; filename="x.bin"\r\n\r\n'
CLOSE = DELIM + b"--\r\n"
CHUNK = 64 * 1024
BIG = 4_000_000  # bytes of hostile input for the timed run (and twice that)
SMALL = 600  # bytes for the all-chunkings run

Summary = list[tuple[str, str | None, bytes]]


def summarise(events: Sequence[Event]) -> Summary:
    out: Summary = []
    for event in events:
        if isinstance(event, PartStart):
            out.append((event.name, event.raw_filename, b""))
        elif isinstance(event, PartData):
            name, raw, data = out[-1]
            out[-1] = (name, raw, data + event.data)
    return out


def repeat_to(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


@dataclass(frozen=True)
class Case:
    """One hostile input: how to build it at a size, and what must come of it."""

    id: str
    source: str  # the advisory the input is drawn from
    build: Callable[[int], bytes]
    # The error class (with the limit it names), or the parsed result at a size.
    expect: tuple[type[UploadError], str] | Callable[[int], object]
    limits: Limits = field(default_factory=Limits)
    kind: str = "multipart"  # or "urlencoded"
    # Floods that cost a Python step per item (a parameter, an escape, a part) are timed
    # on a quarter of the size: still linear, but the suite stays quick.
    scale: float = 1.0


def file_result(data: Callable[[int], bytes]) -> Callable[[int], object]:
    return lambda n: [("f", "x.bin", data(n))]


def file_body(data: Callable[[int], bytes]) -> Callable[[int], bytes]:
    return lambda n: FILE_HEAD + data(n) + CLOSE


def many_parts(part: bytes) -> Callable[[int], bytes]:
    return lambda n: repeat_to(part, n) + b"--" + B + b"--"


def CR_THEN_ZEROS(n: int) -> bytes:
    return b"\r" + b"\0" * n


def CRLFS(n: int) -> bytes:
    return repeat_to(b"\r\n", n)


def CRS(n: int) -> bytes:
    return b"\r" * n


def NEAR_MISS(n: int) -> bytes:
    return repeat_to(DELIM[:-1] + b"X", n)


def PREFIXES(n: int) -> bytes:
    return repeat_to(b"".join(DELIM[:k] + b"x" for k in range(1, len(DELIM))), n)


EMPTY_FIELD = HEAD + b'Content-Disposition: form-data; name="a"\r\n\r\n\r\n'
EMPTY_FILE = HEAD + b'Content-Disposition: form-data; name="a"; filename="b"\r\n\r\n\r\n'
MANY = Limits(max_fields=10**7, max_files=10**7)
ROOMY_HEADERS = Limits(max_header_size=10**8, max_headers=10**7)
# Limits small enough that the small body of each case crosses them too.
SMALL_HEADERS = Limits(max_header_size=500)

CASES = [
    # --- floods before the first boundary and after the last --------------------------
    Case(
        "preamble-crlf-flood",
        "python-multipart CVE-2024-53981, CVE-2026-40347",
        lambda n: CRLFS(n) + FIELD_A,
        lambda n: [("a", None, b"1")],
    ),
    Case(
        "preamble-cr-flood",
        "python-multipart CVE-2024-53981",
        lambda n: CRS(n) + b"\r\n" + FIELD_A,
        lambda n: [("a", None, b"1")],
    ),
    Case(
        "preamble-cr-flood-bare-cr-before-boundary",
        "python-multipart CVE-2024-53981",
        lambda n: CRS(n) + FIELD_A,
        (MalformedRequest, ""),
    ),
    Case(
        "preamble-lf-flood",
        "python-multipart CVE-2024-53981",
        lambda n: b"\n" * n + b"\r\n" + FIELD_A,
        lambda n: [("a", None, b"1")],
    ),
    Case(
        "preamble-lf-flood-bare-lf-before-boundary",
        "python-multipart CVE-2024-53981",
        lambda n: b"\n" * n + FIELD_A,
        (MalformedRequest, ""),
    ),
    Case(
        "preamble-dash-flood",
        "python-multipart CVE-2026-40347",
        lambda n: b"-" * n + b"\r\n" + FIELD_A,
        lambda n: [("a", None, b"1")],
    ),
    Case(
        "preamble-near-miss-flood",
        "python-multipart CVE-2026-40347",
        lambda n: NEAR_MISS(n) + b"\r\n" + FIELD_A,
        lambda n: [("a", None, b"1")],
    ),
    Case(
        "preamble-boundary-prefixed-lines",
        "python-multipart CVE-2026-40347",
        lambda n: repeat_to(b"--" + B + b"X\r\n", n) + FIELD_A,
        (MalformedRequest, ""),
    ),
    Case(
        "preamble-without-boundary",
        "python-multipart CVE-2026-40347",
        CRLFS,
        (MalformedRequest, ""),
    ),
    Case(
        "epilogue-crlf-flood",
        "python-multipart CVE-2024-53981, CVE-2026-40347",
        lambda n: FIELD_A + CRLFS(n),
        lambda n: [("a", None, b"1")],
    ),
    Case(
        "epilogue-delimiter-flood",
        "python-multipart CVE-2026-40347",
        lambda n: FIELD_A + repeat_to(DELIM + b"\r\n", n),
        lambda n: [("a", None, b"1")],
    ),
    Case(
        "transport-padding-flood",
        "RFC 2046 transport padding, unbounded",
        lambda n: b"--" + B + b" " * n + b"\r\n" + FIELD_A.split(b"\r\n", 1)[1],
        lambda n: [("a", None, b"1")],
    ),
    # --- file bodies that trouble a delimiter search -----------------------------------
    Case(
        "file-starts-with-cr-never-lf",
        "Werkzeug CVE-2023-46136",
        file_body(CR_THEN_ZEROS),
        file_result(CR_THEN_ZEROS),
    ),
    Case(
        "file-crlf-flood",
        "Werkzeug CVE-2023-46136",
        file_body(CRLFS),
        file_result(CRLFS),
    ),
    Case(
        "file-cr-flood",
        "Werkzeug CVE-2023-46136",
        file_body(CRS),
        file_result(CRS),
    ),
    Case(
        "file-near-miss-delimiters",
        "multipart (defnull) benchmark worst case",
        file_body(NEAR_MISS),
        file_result(NEAR_MISS),
    ),
    Case(
        "file-delimiter-prefixes",
        "aiohttp CVE-2024-30251 (partial boundaries)",
        file_body(PREFIXES),
        file_result(PREFIXES),
    ),
    # --- part floods ------------------------------------------------------------------
    Case(
        "field-flood",
        "Starlette CVE-2023-30798, Django CVE-2023-24580, Werkzeug CVE-2023-25577",
        many_parts(EMPTY_FIELD),
        (TooManyParts, "max_fields"),
        Limits(max_fields=5),
    ),
    Case(
        "file-flood",
        "Django CVE-2023-24580, Go CVE-2022-41725",
        many_parts(EMPTY_FILE),
        (TooManyParts, "max_files"),
        Limits(max_files=5),
    ),
    Case(
        "field-flood-limits-raised",
        "Werkzeug CVE-2023-25577 (must stay linear when allowed)",
        many_parts(EMPTY_FIELD),
        lambda n: [("a", None, b"")] * max(1, n // len(EMPTY_FIELD)),
        MANY,
        scale=0.25,
    ),
    Case(
        "field-too-large",
        "Starlette CVE-2024-47874, Werkzeug CVE-2024-49767",
        lambda n: HEAD + b'Content-Disposition: form-data; name="a"\r\n\r\n' + b"x" * n + CLOSE,
        (RequestTooLarge, "max_field_size"),
        Limits(max_field_size=100),
    ),
    Case(
        "small-parts-over-body-size",
        "aiohttp CVE-2025-69228",
        many_parts(
            HEAD + b'Content-Disposition: form-data; name="a"\r\n\r\n' + b"x" * 20 + b"\r\n"
        ),
        (RequestTooLarge, "max_body_size"),
        Limits(max_body_size=400, max_fields=10**7),
    ),
    Case(
        "file-too-large",
        "Go CVE-2022-41725",
        file_body(lambda n: b"x" * n),
        (FileTooLarge, "max_file_size"),
        Limits(max_file_size=100),
    ),
    # --- header floods ----------------------------------------------------------------
    Case(
        "header-lines-flood",
        "python-multipart GHSA-pp6c-gr5w-3c5g, Go CVE-2023-24536",
        lambda n: HEAD + repeat_to(b"X: 1\r\n", n) + b"\r\n" + CLOSE,
        (RequestTooLarge, "max_header_size"),
        SMALL_HEADERS,
    ),
    Case(
        "header-lines-over-count",
        "aiohttp GHSA-m5qp-6w8w-w647, Go CVE-2023-24536",
        lambda n: (
            HEAD + b"X: 1\r\n" * 33 + b"Content-Disposition: form-data; name=a\r\n\r\n" + CLOSE
        ),
        (TooManyParts, "max_headers"),
    ),
    Case(
        "header-never-ends",
        "Go CVE-2023-24534",
        lambda n: HEAD + b"Content-Disposition: form-data; name=" + b"a" * n,
        (RequestTooLarge, "max_header_size"),
        SMALL_HEADERS,
    ),
    Case(
        "header-value-oversized",
        "python-multipart GHSA-pp6c-gr5w-3c5g",
        lambda n: HEAD + b"X: " + b"v" * n + b"\r\n\r\n" + CLOSE,
        (RequestTooLarge, "max_header_size"),
        SMALL_HEADERS,
    ),
    Case(
        "header-crlf-flood",
        "python-multipart GHSA-pp6c-gr5w-3c5g",
        lambda n: HEAD + CRLFS(n),
        (MalformedRequest, ""),
    ),
    Case(
        "header-lf-flood",
        "Go CVE-2023-24534",
        lambda n: HEAD + b"\n" * n,
        (RequestTooLarge, "max_header_size"),
        SMALL_HEADERS,
    ),
    Case(
        "header-backslash-flood",
        "python-multipart CVE-2024-24762 (quoted strings)",
        lambda n: (
            HEAD + b'Content-Disposition: form-data; name="' + b"\\\\" * (n // 2) + b'"'
            b"\r\n\r\n" + CLOSE
        ),
        lambda n: [("\\" * max(1, n // 2), None, b"")],
        ROOMY_HEADERS,
        scale=0.25,
    ),
    Case(
        "header-parameter-flood",
        "python-multipart CVE-2024-24762",
        lambda n: (
            HEAD
            + b"Content-Disposition: form-data; name=a"
            + repeat_to(b"; p=1", n)
            + b"\r\n\r\n"
            + CLOSE
        ),
        (MalformedRequest, ""),  # "p" is given twice
        ROOMY_HEADERS,
        scale=0.25,
    ),
    Case(
        "header-semicolon-flood",
        "python-multipart CVE-2024-24762",
        lambda n: HEAD + b"Content-Disposition: form-data; name=a" + b";" * n + b"\r\n\r\n" + CLOSE,
        lambda n: [("a", None, b"")],
        ROOMY_HEADERS,
        scale=0.25,
    ),
    # --- parameter smuggling ----------------------------------------------------------
    Case(
        "smuggle-name-twice",
        "parameter smuggling (two readers, two names)",
        lambda n: HEAD + b'Content-Disposition: form-data; name="a"; name="b"\r\n\r\n' + CLOSE,
        (MalformedRequest, ""),
    ),
    Case(
        "smuggle-filename-star",
        "parameter smuggling, RFC 6266 filename vs filename*",
        lambda n: (
            HEAD + b"Content-Disposition: form-data; name=f; filename=a.jpg; "
            b"filename*=utf-8''a.php\r\n\r\n" + CLOSE
        ),
        (MalformedRequest, ""),
    ),
    Case(
        "smuggle-name-star",
        "parameter smuggling",
        lambda n: HEAD + b"Content-Disposition: form-data; name=a; name*=utf-8''b\r\n\r\n" + CLOSE,
        (MalformedRequest, ""),
    ),
    Case(
        "smuggle-two-dispositions",
        "parameter smuggling",
        lambda n: (
            HEAD + b"Content-Disposition: form-data; name=a\r\n"
            b"Content-Disposition: form-data; name=b\r\n\r\n" + CLOSE
        ),
        (MalformedRequest, ""),
    ),
    Case(
        "smuggle-boundary-in-data",
        "parameter smuggling (delimiter followed by text)",
        lambda n: FILE_HEAD + b"x" * n + DELIM + b"Content-Disposition: x" + CLOSE,
        (MalformedRequest, ""),
    ),
    Case(
        "path-traversal-filename",
        "Django CVE-2021-31542",
        lambda n: (
            HEAD + b'Content-Disposition: form-data; name="f"; filename="../../etc/passwd"'
            b"\r\n\r\nroot" + CLOSE
        ),
        lambda n: [("f", "../../etc/passwd", b"root")],
    ),
    # --- truncated bodies -------------------------------------------------------------
    Case(
        "truncated-in-data",
        "aiohttp CVE-2024-30251, Django CVE-2022-23833 (no hang at the end)",
        lambda n: FILE_HEAD + b"x" * n,
        (MalformedRequest, ""),
    ),
    Case(
        "truncated-in-delimiter",
        "aiohttp CVE-2024-30251",
        lambda n: FILE_HEAD + b"x" * n + DELIM[:-3],
        (MalformedRequest, ""),
    ),
    Case(
        "truncated-after-delimiter-cr",
        "aiohttp CVE-2024-30251",
        lambda n: FILE_HEAD + b"x" * n + DELIM + b"\r",
        (MalformedRequest, ""),
    ),
    Case(
        "truncated-after-cr-flood",
        "Werkzeug CVE-2023-46136",
        lambda n: FILE_HEAD + CRS(n),
        (MalformedRequest, ""),
    ),
    # --- form-urlencoded --------------------------------------------------------------
    Case(
        "urlencoded-ampersand-flood",
        "Werkzeug CVE-2023-25577 (field floods)",
        lambda n: b"&" * n,
        lambda n: [],
        kind="urlencoded",
    ),
    Case(
        "urlencoded-field-flood",
        "Starlette CVE-2023-30798",
        lambda n: repeat_to(b"a=1&", n),
        (TooManyParts, "max_fields"),
        Limits(max_fields=5),
        kind="urlencoded",
    ),
    Case(
        "urlencoded-value-too-large",
        "Starlette CVE-2024-47874",
        lambda n: b"a=" + b"x" * n,
        (RequestTooLarge, "max_field_size"),
        Limits(max_field_size=100),
        kind="urlencoded",
    ),
    Case(
        "urlencoded-percent-flood",
        "python-multipart querystring parser",
        lambda n: b"a=" + b"%" * n,
        lambda n: [("a", "%" * n)],
        Limits(max_field_size=10**8),
        kind="urlencoded",
        scale=0.25,
    ),
    Case(
        "urlencoded-escape-flood",
        "python-multipart querystring parser",
        lambda n: b"a=" + repeat_to(b"%41", n),
        lambda n: [("a", "A" * max(1, n // 3))],
        Limits(max_field_size=10**8),
        kind="urlencoded",
        scale=0.25,
    ),
]


def run(case: Case, chunks: list[bytes]) -> object:
    """Parse ``chunks`` as ``case`` says and return a comparable result."""
    if case.kind == "urlencoded":
        fields = collect_fields(URLEncodedParser(limits=case.limits), chunks)
        return [(f.name, f.value) for f in fields]
    return summarise(collect_events(MultipartParser(BOUNDARY, limits=case.limits), chunks))


def check_outcome(case: Case, size: int, chunks: list[bytes]) -> None:
    if callable(case.expect):
        assert run(case, chunks) == case.expect(size)
        return
    error, limit = case.expect
    with pytest.raises(UploadError) as info:
        run(case, chunks)
    assert type(info.value) is error
    if limit:
        assert isinstance(info.value, RequestTooLarge)
        assert info.value.limit == limit
        assert f"{limit}=" in info.value.message


def timed(case: Case, size: int) -> float:
    body = case.build(size)
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    return best_time(lambda: check_outcome(case, size, chunks))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_outcome_under_all_chunkings(case: Case) -> None:
    body = case.build(SMALL)
    same_under_all_chunkings(body, lambda chunks: _as_list(run(case, chunks)), randoms=4)
    check_outcome(case, SMALL, [body])


def _as_list(result: object) -> list[object]:
    assert isinstance(result, list)
    return result


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_linear_time(case: Case) -> None:
    size = int(BIG * case.scale)
    single = timed(case, size)
    double = timed(case, 2 * size)
    assert_linear(single, double, case.id)


# --- Content-Type values (the header a client controls before any body) --------------

CONTENT_TYPES = [
    pytest.param(
        lambda n: "multipart/form-data; boundary=" + "a" * n, MalformedRequest, id="long-boundary"
    ),
    pytest.param(
        lambda n: (
            "multipart/form-data;" + "".join(f" p{k}=b;" for k in range(n // 10)) + " boundary=x"
        ),
        None,
        id="many-params",
    ),
    pytest.param(
        lambda n: 'multipart/form-data; boundary="' + "\\" * n, MalformedRequest, id="backslashes"
    ),
    pytest.param(
        lambda n: "multipart/form-data; boundary=" + "\t" * n, MalformedRequest, id="tabs"
    ),
    pytest.param(lambda n: "multipart/form-data" + " " * n + ";", MalformedRequest, id="spaces"),
]


@pytest.mark.parametrize(("build", "error"), CONTENT_TYPES)
def test_content_type_linear(build: Callable[[int], str], error: type[UploadError] | None) -> None:
    # python-multipart CVE-2024-24762: a Content-Type that a backtracking regex chokes on.
    times = []
    for size in (BIG // 4, BIG // 2):
        value = build(size)
        if error is None:
            times.append(best_time(partial(_boundary_is_x, value)))
        else:
            times.append(best_time(partial(_refused, value, error)))
    assert_linear(times[0], times[1], "Content-Type")


def _boundary_is_x(value: str) -> None:
    assert multipart_boundary(value) == b"x"


def _refused(value: str, error: type[UploadError]) -> None:
    with pytest.raises(error):
        multipart_boundary(value)


def test_options_header_many_duplicates_fails_fast() -> None:
    # Refused at the second "x": a thousand times the input, about the same time.
    small, big = "a" + "; x=1" * 1_000, "a" + "; x=1" * 1_000_000
    times = [best_time(partial(_refused_options, value)) for value in (small, big)]
    assert times[1] < LINEAR_RATIO * times[0] + LINEAR_SLACK, times


def _refused_options(value: str) -> None:
    with pytest.raises(MalformedRequest):
        parse_options_header(value)
