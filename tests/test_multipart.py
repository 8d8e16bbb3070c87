"""Tests for spoolup.multipart: every body parsed under every chunking."""

from __future__ import annotations

import dataclasses
import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spoolup.errors import (
    FileTooLarge,
    MalformedRequest,
    RequestTooLarge,
    TooManyParts,
    UploadError,
)
from spoolup.limits import Limits
from spoolup.multipart import Event, MultipartParser, PartData, PartEnd, PartStart
from tests.chunking import (
    BOUNDARY,
    collect_events,
    encode_body,
    encode_part,
    merge_events,
    multipart_events,
    random_chunks,
    same_under_all_chunkings,
)

B = BOUNDARY.encode()
CD = "content-disposition"
HEAD = b"--" + B + b"\r\n"
TAIL = b"\r\n\r\nx\r\n--" + B + b"--\r\n"


def field(name: str, value: bytes) -> list[Event]:
    headers = ((CD, f'form-data; name="{name}"'),)
    start = PartStart(name, None, None, None, None, headers)
    return [start, PartData(value), PartEnd()] if value else [start, PartEnd()]


def parse(body: bytes, limits: Limits | None = None) -> list[Event]:
    """The events of ``body``, checked to be the same under every chunking."""
    kind, result = same_under_all_chunkings(
        body, lambda chunks: multipart_events(chunks, limits=limits)
    )
    assert kind == "ok", f"expected a parse, got {result}"
    assert isinstance(result, list)
    return result


def refused(body: bytes, limits: Limits | None = None) -> type[UploadError]:
    """The error class ``body`` raises, checked to be the same under every chunking."""
    kind, result = same_under_all_chunkings(
        body, lambda chunks: multipart_events(chunks, limits=limits)
    )
    assert kind == "error", f"expected an error, got {result}"
    assert isinstance(result, type)
    assert issubclass(result, UploadError)
    return result


# --- valid bodies -------------------------------------------------------------------


def test_field_and_file() -> None:
    body = encode_body(
        [
            encode_part("title", b"Hello"),
            encode_part("upload", b"file\r\ndata", filename="a.txt", content_type="text/plain"),
        ]
    )
    file_headers = (
        (CD, 'form-data; name="upload"; filename="a.txt"'),
        ("content-type", "text/plain"),
    )
    assert parse(body) == [
        *field("title", b"Hello"),
        PartStart("upload", "a.txt", "a.txt", "text/plain", None, file_headers),
        PartData(b"file\r\ndata"),
        PartEnd(),
    ]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\r", id="cr"),
        pytest.param(b"\n", id="lf"),
        pytest.param(b"\r\n", id="crlf"),
        pytest.param(b"\r\n\r\n", id="crlfcrlf"),
        pytest.param(b"--", id="dashes"),
        pytest.param(b"\r\n--", id="crlf-dashes"),
        pytest.param(b"\r\n-" + B, id="one-dash"),
        pytest.param(b"x--" + B + b"--", id="close-without-crlf"),
        pytest.param(b"\r\n--" + B[:-1], id="boundary-prefix"),
        pytest.param(b"\r\n--" + B[:-1] + b"\r\n--" + B[:-2], id="two-prefixes"),
        pytest.param(b"\r\r\r\r", id="crs"),
        pytest.param(b"\n--" + B + b"\r\n", id="lf-boundary"),
        pytest.param(b"\r--" + B + b"\r\n", id="cr-boundary"),
        pytest.param(bytes(range(256)) * 2, id="all-bytes"),
    ],
)
def test_tricky_data(data: bytes) -> None:
    body = encode_body([encode_part("f", data), encode_part("g", data)])
    assert parse(body) == [*field("f", data), *field("g", data)]


def test_empty_part_whose_headers_end_at_the_delimiter() -> None:
    # RFC 2046 body-part := MIME-part-headers [CRLF *OCTET]: the delimiter's CRLF ends the
    # header block; Werkzeug (and so Flask's test client) sends empty values this way.
    body = (
        HEAD
        + b'Content-Disposition: form-data; name="a"\r\n'
        + b"\r\n--"
        + B
        + b"\r\n"
        + b'Content-Disposition: form-data; name="b"\r\n\r\n2'
        + b"\r\n--"
        + B
        + b"\r\n"
        + b'Content-Disposition: form-data; name="f"; filename="e.txt"\r\n'
        + b"Content-Type: text/plain\r\n"
        + b"\r\n--"
        + B
        + b"--\r\n"
    )
    file_headers = ((CD, 'form-data; name="f"; filename="e.txt"'), ("content-type", "text/plain"))
    assert parse(body) == [
        *field("a", b""),
        *field("b", b"2"),
        PartStart("f", "e.txt", "e.txt", "text/plain", None, file_headers),
        PartEnd(),
    ]


def test_werkzeug_encoder_empty_values() -> None:
    from werkzeug.datastructures import FileStorage
    from werkzeug.datastructures import MultiDict as WerkzeugMultiDict
    from werkzeug.test import encode_multipart

    data = WerkzeugMultiDict(
        [("a", ""), ("b", "x"), ("f", FileStorage(io.BytesIO(b""), filename="e.txt"))]
    )
    _, body = encode_multipart(data, boundary=BOUNDARY)
    events = parse(body)
    assert [(type(e).__name__, getattr(e, "name", None)) for e in events] == [
        ("PartStart", "a"),
        ("PartEnd", None),
        ("PartStart", "b"),
        ("PartData", None),
        ("PartEnd", None),
        ("PartStart", "f"),
        ("PartEnd", None),
    ]


def test_boundary_opening_part_data_is_a_delimiter() -> None:
    # Read as data, "--boundary..." right after the headers would hide the next part
    # inside this one: two readers, two forms. It is the delimiter, and what follows a
    # delimiter must be "--", padding or CRLF.
    body = encode_body([encode_part("f", b"--" + B + b"x")])
    assert refused(body) is MalformedRequest


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(HEAD + b"Content-Disposition: attachment\r\n\r\nx", id="bad-part"),
        pytest.param(HEAD + b'Content-Disposition: form-data; name="a"\r\n\r\nx', id="short"),
    ],
)
def test_refuses_input_after_an_error(body: bytes) -> None:
    parser = MultipartParser(BOUNDARY)
    parser.feed(body[:10])
    with pytest.raises(MalformedRequest) as first:
        collect_events(parser, [body[10:]])
    # h11's rule: a parser that has raised is dead, never quietly successful again.
    closing = b"\r\n--" + B + b"--\r\n"
    for call in (lambda: parser.feed(closing), parser.close, lambda: parser.feed(b"")):
        with pytest.raises(MalformedRequest) as again:
            call()
        assert again.value is first.value


def test_refuses_input_after_a_limit() -> None:
    parser = MultipartParser(BOUNDARY, limits=Limits(max_field_size=1))
    with pytest.raises(RequestTooLarge) as first:
        parser.feed(HEAD + b'Content-Disposition: form-data; name="a"\r\n\r\nxyz')
    with pytest.raises(RequestTooLarge) as again:
        parser.feed(b"\r\n--" + B + b"--\r\n")
    assert again.value is first.value


def test_preamble_and_epilogue_skipped() -> None:
    body = encode_body(
        [encode_part("a", b"1")],
        preamble=b"This is a preamble.\r\n--not-the-boundary\r\n\r\n\r\n",
        epilogue=b"\r\n--" + B + b"\r\nContent-Disposition: form-data; name=x\r\n\r\nignored",
    )
    assert parse(body) == field("a", b"1")


@pytest.mark.parametrize(
    "preamble",
    [
        pytest.param(b"--" + B + b"X\r\n", id="boundary-then-text"),
        pytest.param(b"--" + B + b"-\r\n", id="boundary-then-one-dash"),
        pytest.param(b"x--" + B + b"\r\n", id="boundary-mid-line"),
        pytest.param(b"\r", id="bare-cr"),
        pytest.param(b"\n", id="bare-lf"),
        pytest.param(b"\r\n\n", id="crlf-lf"),
    ],
)
def test_preamble_boundary_not_starting_a_line(preamble: bytes) -> None:
    # Refused: a reader skipping stray bytes would see parts where this one sees none.
    assert refused(preamble + encode_body([encode_part("a", b"1")])) is MalformedRequest


def test_body_starting_with_crlf() -> None:
    assert parse(b"\r\n" + encode_body([encode_part("a", b"1")])) == field("a", b"1")


def test_no_crlf_after_closing_boundary() -> None:
    body = encode_body([encode_part("a", b"1")])
    assert parse(body.removesuffix(b"\r\n")) == field("a", b"1")


def test_empty_form() -> None:
    assert parse(b"--" + B + b"--") == []
    assert parse(b"--" + B + b"--\r\n") == []


def test_transport_padding() -> None:
    body = encode_body([encode_part("a", b"1"), encode_part("b", b"2")])
    padded = body.replace(B + b"\r\n", B + b" \t  \r\n").replace(B + b"--", B + b"-- \t")
    assert parse(padded) == [*field("a", b"1"), *field("b", b"2")]


def test_headers_kept_in_order_and_lowercased() -> None:
    body = encode_body(
        [
            (
                [
                    ("X-Custom", "one"),
                    ("content-disposition", 'form-data; name="a"; filename="b.bin"'),
                    ("CONTENT-TYPE", "Application/Octet-Stream; Charset=latin-1"),
                    ("Content-Transfer-Encoding", "binary"),
                    ("X-Empty", ""),
                    ("X-Spaces", " \t padded \t "),
                ],
                b"x",
            )
        ]
    )
    (start, *_rest) = parse(body)
    assert start == PartStart(
        "a",
        "b.bin",
        "b.bin",
        "application/octet-stream",
        "latin-1",
        (
            ("x-custom", "one"),
            (CD, 'form-data; name="a"; filename="b.bin"'),
            ("content-type", "Application/Octet-Stream; Charset=latin-1"),
            ("content-transfer-encoding", "binary"),
            ("x-empty", ""),
            ("x-spaces", "padded"),
        ),
    )


@pytest.mark.parametrize(
    ("disposition_bytes", "name", "filename", "raw_filename"),
    [
        pytest.param(
            'form-data; name="f"; filename="résumé.pdf"'.encode(),
            "f",
            "résumé.pdf",
            "résumé.pdf",
            id="raw-utf8",
        ),
        pytest.param(
            b'form-data; name="f"; filename="caf\xe9.txt"',
            "f",
            "café.txt",
            "café.txt",
            id="latin1-fallback",
        ),
        pytest.param(
            b"form-data; name=\"f\"; filename*=UTF-8''%E2%82%AC%20rates.txt",
            "f",
            "€ rates.txt",
            "€ rates.txt",
            id="rfc5987",
        ),
        pytest.param(
            b'form-data; name="f"; filename="../../etc/passwd"',
            "f",
            "passwd",
            "../../etc/passwd",
            id="traversal",
        ),
        pytest.param(
            b'form-data; name="f"; filename="C:\\\\temp\\\\x.txt"',
            "f",
            "x.txt",
            "C:\\temp\\x.txt",
            id="windows-escaped",
        ),
        pytest.param(
            b'form-data; name="f"; filename="C:\\Users\\a\\evil.exe"',
            "f",
            "evil.exe",
            "C:\\Users\\a\\evil.exe",
            id="windows-path-as-browsers-send-it",
        ),
        pytest.param(
            b'form-data; name="f"; filename="..\\..\\windows\\boot.ini"',
            "f",
            "boot.ini",
            "..\\..\\windows\\boot.ini",
            id="windows-traversal",
        ),
        pytest.param(
            b'form-data; name="f"; filename="C:evil.exe"',
            "f",
            "evil.exe",
            "C:evil.exe",
            id="drive-relative",
        ),
        pytest.param(
            b'form-data; name="f"; filename="x\\"y\\\\z.txt"',
            "f",
            "z.txt",
            'x"y\\z.txt',
            id="quote-and-backslash-escapes",
        ),
        pytest.param(b'form-data; name="f"; filename=""', "f", "upload", "", id="no-file-chosen"),
        pytest.param(
            b'form-data; name="a %22b%22"; filename="c %22d%22.txt"',
            "a %22b%22",
            "c %22d%22.txt",
            "c %22d%22.txt",
            id="whatwg-escapes-kept",
        ),
        pytest.param(
            b'form-data; name="f"; filename="evil\xe2\x80\xaetxt.exe"',
            "f",
            "eviltxt.exe",
            "evil\u202etxt.exe",
            id="bidi-override",
        ),
    ],
)
def test_filenames(disposition_bytes: bytes, name: str, filename: str, raw_filename: str) -> None:
    body = HEAD + b"Content-Disposition: " + disposition_bytes + TAIL
    start = parse(body)[0]
    assert isinstance(start, PartStart)
    assert (start.name, start.filename, start.raw_filename) == (name, filename, raw_filename)


def test_many_content_types() -> None:
    types = [f"type/x{k}; charset=c{k}" for k in range(40)] * 2
    body = encode_body(encode_part("f", b"", filename="a", content_type=t) for t in types)
    starts = [e for e in parse(body) if isinstance(e, PartStart)]
    assert [(s.content_type, s.charset) for s in starts] == [
        (f"type/x{k}", f"c{k}") for k in range(40)
    ] * 2


def test_boundary_forms() -> None:
    body = encode_body([encode_part("a", b"1")], boundary="a'()+_,-./:=? z")
    assert MultipartParser("a'()+_,-./:=? z").feed(body)[1] == PartData(b"1")
    assert MultipartParser(b"a'()+_,-./:=? z").feed(body)[1] == PartData(b"1")
    for bad in ("", "x" * 71, "a\r\nb", "trailing ", "é"):
        with pytest.raises(MalformedRequest):
            MultipartParser(bad)


def test_accepts_bytearray_and_memoryview() -> None:
    body = encode_body([encode_part("a", b"12")])
    parser = MultipartParser(BOUNDARY)
    events = parser.feed(bytearray(body[:60]))  # type: ignore[arg-type]
    events += parser.feed(memoryview(body[60:]))  # type: ignore[arg-type]
    parser.close()
    assert merge_events(events) == field("a", b"12")
    assert all(type(e.data) is bytes for e in events if isinstance(e, PartData))


def test_feed_after_end_is_ignored() -> None:
    parser = MultipartParser(BOUNDARY)
    assert parser.feed(b"--" + B + b"--") == []
    assert parser.feed(b"anything at all") == []
    parser.close()


# --- streaming properties -----------------------------------------------------------


def test_data_chunk_passed_on_without_copy() -> None:
    parser = MultipartParser(BOUNDARY)
    parser.feed(encode_body([encode_part("f", b"", filename="a")]).split(b"\r\n\r\n")[0])
    parser.feed(b"\r\n\r\n")
    chunk = random.Random(1).randbytes(65536).replace(b"\r", b"x")
    (event,) = parser.feed(chunk)
    assert isinstance(event, PartData)
    assert event.data is chunk


def test_memory_held_is_bounded_by_one_delimiter() -> None:
    # Whatever the chunk holds, all but at most len(delimiter) bytes come out at once.
    parser = MultipartParser(BOUNDARY)
    parser.feed(b"--" + B + b'\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\n')
    rng = random.Random(2)
    delimiter = b"\r\n--" + B
    sent = received = 0
    for k in range(200):
        chunk = rng.randbytes(rng.randint(0, 300))
        if k % 3 == 0:
            chunk += delimiter[: rng.randint(1, len(delimiter) - 1)]  # a prefix at the tail
        sent += len(chunk)
        received += sum(len(e.data) for e in parser.feed(chunk) if isinstance(e, PartData))
        assert sent - received < len(delimiter)


def test_first_events_before_body_ends() -> None:
    parser = MultipartParser(BOUNDARY)
    events = parser.feed(b"--" + B + b'\r\nContent-Disposition: form-data; name="f"\r\n\r\nab')
    assert [type(e) for e in events] == [PartStart, PartData]
    with pytest.raises(MalformedRequest):
        parser.close()


# --- malformed bodies ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"no boundary here", id="no-boundary"),
        pytest.param(b"--" + B, id="only-boundary"),
        pytest.param(HEAD, id="after-boundary-line"),
        pytest.param(HEAD + b"Content-Disposition: form-data; name=a", id="in-headers"),
        pytest.param(HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nab", id="in-data"),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nab\r\n--" + B[:5],
            id="in-delimiter",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nab\r\n--" + B,
            id="after-delimiter",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nab\r\n--" + B + b"-",
            id="half-close",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nab\r\n--" + B + b"  ",
            id="in-padding",
        ),
    ],
)
def test_truncated(body: bytes) -> None:
    assert refused(body) is MalformedRequest


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(HEAD + b"\r\nx\r\n--" + B + b"--", id="no-headers"),
        pytest.param(HEAD + b"Content-Type: text/plain" + TAIL, id="no-disposition"),
        pytest.param(HEAD + b"Content-Disposition: attachment; name=a" + TAIL, id="attachment"),
        pytest.param(HEAD + b"Content-Disposition: form-data" + TAIL, id="no-name"),
        pytest.param(HEAD + b"Content-Disposition:" + TAIL, id="empty-disposition"),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\nContent-Disposition: "
            b"form-data; name=b" + TAIL,
            id="two-dispositions",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\nContent-Type: a/b\r\n"
            b"content-type: c/d" + TAIL,
            id="two-content-types",
        ),
        pytest.param(
            HEAD + b'Content-Disposition: form-data; name="a"; name="b"' + TAIL,
            id="name-twice",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a; filename=x.txt; "
            b"filename*=utf-8''x.exe" + TAIL,
            id="filename-smuggling",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a; name*=utf-8''b" + TAIL,
            id="name-smuggling",
        ),
        pytest.param(HEAD + b"Content-Disposition form-data; name=a" + TAIL, id="no-colon"),
        pytest.param(HEAD + b": form-data; name=a" + TAIL, id="empty-header-name"),
        pytest.param(
            HEAD + b"Content-Disposition : form-data; name=a" + TAIL, id="space-before-colon"
        ),
        pytest.param(HEAD + b"Content-Disposition: form-data;\r\n name=a" + TAIL, id="folded-line"),
        pytest.param(HEAD + b"Content-Disposition: form-data; name=a\rX: y" + TAIL, id="bare-cr"),
        pytest.param(HEAD + b"Content-Disposition: form-data; name=a\nX: y" + TAIL, id="bare-lf"),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nx\r\n--" + B + b"X\r\n"
            b"--" + B + b"--",
            id="boundary-then-text",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nx\r\n--" + B + b" x\r\n"
            b"--" + B + b"--",
            id="padding-then-text",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nx\r\n--" + B + b"\n",
            id="boundary-then-lf",
        ),
        pytest.param(
            HEAD + b"Content-Disposition: form-data; name=a\r\n\r\nx\r\n--" + B + b"\r",
            id="boundary-then-cr-end",
        ),
    ],
)
def test_malformed(body: bytes) -> None:
    assert refused(body) is MalformedRequest


def test_bad_content_type_falls_back_to_octet_stream() -> None:
    body = HEAD + b'Content-Disposition: form-data; name=a\r\nContent-Type: a; b="' + TAIL
    start = parse(body)[0]
    assert isinstance(start, PartStart)
    assert (start.content_type, start.charset) == ("application/octet-stream", None)
    assert start.headers[1] == ("content-type", 'a; b="')  # as sent


def test_lf_only_line_endings_are_refused() -> None:
    body = encode_body([encode_part("a", b"1")]).replace(b"\r\n", b"\n")
    assert refused(body) is MalformedRequest


# --- limits -------------------------------------------------------------------------


def limit_error(body: bytes, **limits: int) -> RequestTooLarge:
    parser = MultipartParser(BOUNDARY, limits=Limits(**limits))
    with pytest.raises(RequestTooLarge) as info:
        collect_events(parser, [body])
    return info.value


@pytest.mark.parametrize(
    ("limit", "error", "ok_body", "bad_body"),
    [
        pytest.param(
            "max_body_size",
            RequestTooLarge,
            encode_body([encode_part("a", b"x" * 10)]),
            encode_body([encode_part("a", b"x" * 11)]),
            id="body",
        ),
        pytest.param(
            "max_file_size",
            FileTooLarge,
            encode_body([encode_part("a", b"x" * 10, filename="f")]),
            encode_body([encode_part("a", b"x" * 11, filename="f")]),
            id="file",
        ),
        pytest.param(
            "max_field_size",
            RequestTooLarge,
            encode_body([encode_part("a", b"x" * 10)]),
            encode_body([encode_part("a", b"x" * 11)]),
            id="field",
        ),
        pytest.param(
            "max_files",
            TooManyParts,
            encode_body([encode_part("a", b"", filename="f")] * 3 + [encode_part("b", b"")]),
            encode_body([encode_part("a", b"", filename="f")] * 4),
            id="files",
        ),
        pytest.param(
            "max_fields",
            TooManyParts,
            encode_body([encode_part("a", b"")] * 3 + [encode_part("f", b"", filename="f")]),
            encode_body([encode_part("a", b"")] * 4),
            id="fields",
        ),
        pytest.param(
            "max_headers",
            TooManyParts,
            encode_body([encode_part("a", b"", extra=[("X-A", "1")] * 2)]),
            encode_body([encode_part("a", b"", extra=[("X-A", "1")] * 3)]),
            id="headers",
        ),
        pytest.param(
            "max_header_size",
            RequestTooLarge,
            encode_body([encode_part("a", b"", extra=[("X", "v" * 50)])]),
            encode_body([encode_part("a", b"", extra=[("X", "v" * 51)])]),
            id="header-size",
        ),
    ],
)
def test_limits(limit: str, error: type[RequestTooLarge], ok_body: bytes, bad_body: bytes) -> None:
    values = {
        "max_body_size": len(encode_body([encode_part("a", b"x" * 10)])),
        "max_file_size": 10,
        "max_field_size": 10,
        "max_files": 3,
        "max_fields": 3,
        "max_headers": 3,
        "max_header_size": len(b'Content-Disposition: form-data; name="a"\r\nX: ') + 50,
    }
    limits = Limits(**{limit: values[limit]})
    parse(ok_body, limits)  # at the limit: fine
    assert refused(bad_body, limits) is error
    exc = limit_error(bad_body, **{limit: values[limit]})
    assert type(exc) is error
    assert exc.status == 413
    assert (exc.limit, exc.value) == (limit, values[limit])
    assert f"{limit}={values[limit]}" in exc.message


def test_limit_raised_the_moment_it_is_crossed() -> None:
    parser = MultipartParser(BOUNDARY, limits=Limits(max_file_size=100))
    parser.feed(HEAD + b'Content-Disposition: form-data; name="a"; filename="b"\r\n\r\n')
    parser.feed(b"x" * 100)
    with pytest.raises(FileTooLarge):
        parser.feed(b"y")  # the 101st byte: no need to wait for the part to end


def test_limit_counts_data_held_back() -> None:
    # A CR held back as a possible delimiter start is data after all, and counts.
    parser = MultipartParser(BOUNDARY, limits=Limits(max_file_size=3))
    parser.feed(HEAD + b'Content-Disposition: form-data; name="a"; filename="b"\r\n\r\n')
    assert parser.feed(b"abc\r") == [PartData(b"abc")]
    with pytest.raises(FileTooLarge):
        parser.feed(b"x")


def test_latin1_header_in_a_block_of_several_lines() -> None:
    body = (
        HEAD
        + b'Content-Disposition: form-data; name="a"; filename="caf\xe9"\r\n'
        + b"Content-Type: text/plain"
        + TAIL
    )
    start = parse(body)[0]
    assert isinstance(start, PartStart)
    assert (start.filename, start.content_type) == ("café", "text/plain")


def test_header_size_raised_before_block_ends() -> None:
    parser = MultipartParser(BOUNDARY, limits=Limits(max_header_size=100))
    parser.feed(HEAD + b"X: ")
    for _ in range(100 - len(b"X: ")):
        parser.feed(b"v")  # a header block of 100 bytes so far: fine
    with pytest.raises(RequestTooLarge) as info:
        parser.feed(b"v")
    assert info.value.limit == "max_header_size"


def test_body_size_counts_preamble_and_epilogue() -> None:
    body = encode_body([encode_part("a", b"1")], preamble=b"p" * 100)
    with pytest.raises(RequestTooLarge):
        MultipartParser(BOUNDARY, limits=Limits(max_body_size=len(body) - 1)).feed(body)


def test_zero_limits() -> None:
    body = encode_body([encode_part("a", b"")])
    assert refused(body, Limits(max_fields=0)) is TooManyParts
    assert refused(body, Limits(max_headers=0)) is TooManyParts
    assert refused(body, Limits(max_header_size=0)) is RequestTooLarge
    assert parse(body, Limits(max_field_size=0)) == field("a", b"")


# --- properties ---------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8"), max_size=12)
data_bytes = st.one_of(
    st.binary(max_size=80),
    st.lists(
        st.sampled_from([b"\r", b"\n", b"\r\n", b"-", b"--", B[:4], B, b"x", b"\r\n--"]),
        max_size=12,
    ).map(b"".join),
).filter(
    # RFC 2046: never inside a part, and right after the headers "--boundary" is one
    lambda data: b"\r\n--" + B not in data and not data.startswith(b"--" + B)
)
parts = st.lists(
    st.tuples(names, st.one_of(st.none(), names), data_bytes, st.sampled_from([None, "a/b"])),
    max_size=5,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(parts, st.integers(0, 2**32))
def test_generated_forms_round_trip(
    form: list[tuple[str, str | None, bytes, str | None]], seed: int
) -> None:
    rng = random.Random(seed)
    body = encode_body(
        encode_part(name, data, filename=filename, content_type=ctype)
        for name, filename, data, ctype in form
    )
    expected: list[tuple[str, str | None, bytes, str | None]] = []
    for name, filename, data, ctype in form:
        quoted = name.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")
        raw = None
        if filename is not None:
            raw = filename.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")
        expected.append((quoted, raw, data, ctype))
    limits = Limits(max_header_size=100_000)
    for chunks in ([body], [body[i : i + 1] for i in range(len(body))]):
        assert summarise(multipart_events(chunks, limits=limits)) == expected
    for _ in range(3):
        chunks = random_chunks(body, rng, rng.choice((2, 7, 50)))
        assert summarise(multipart_events(chunks, limits=limits)) == expected


def summarise(events: list[Event]) -> list[tuple[str, str | None, bytes, str | None]]:
    out: list[tuple[str, str | None, bytes, str | None]] = []
    for event in events:
        if isinstance(event, PartStart):
            out.append((event.name, event.raw_filename, b"", event.content_type))
        elif isinstance(event, PartData):
            name, raw, data, ctype = out[-1]
            out[-1] = (name, raw, data + event.data, ctype)
    return out


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(0, 2**32))
def test_random_bytes_parse_or_raise_upload_error(noise: bytes, seed: int) -> None:
    rng = random.Random(seed)
    bodies = [noise, b"--" + B + b"\r\n" + noise, encode_body([encode_part("a", noise)])]
    prefix = b"--" + B + b'\r\nContent-Disposition: form-data; name="a"\r\n'
    bodies.append(prefix + noise)
    for body in bodies:
        whole = outcome_of([body])
        assert outcome_of(random_chunks(body, rng, 20)) == whole


def outcome_of(chunks: list[bytes]) -> object:
    try:
        return multipart_events(chunks)
    except UploadError as exc:  # anything else fails the test
        return type(exc)


@settings(max_examples=100)
@given(
    st.lists(
        st.sampled_from(
            [
                b"--" + B,
                b"\r\n",
                b"--",
                b" ",
                b"Content-Disposition: form-data; name=a",
                b'; filename="f"',
                b"Content-Type: text/plain",
                b"x",
                b"\r",
            ]
        ),
        max_size=30,
    ).map(b"".join)
)
def test_structured_noise_agrees_under_chunkings(body: bytes) -> None:
    same_under_all_chunkings(body, multipart_events, randoms=3)


def test_part_start_behaves_as_a_dataclass() -> None:
    start = PartStart("a", "b.txt", "../b.txt", "text/plain", "utf-8", (("x", "y"),))
    assert dataclasses.replace(start, name="c").name == "c"
    assert start == PartStart(*dataclasses.astuple(start))
    assert hash(start) == hash(PartStart(*dataclasses.astuple(start)))
    assert repr(start).startswith("PartStart(name='a', filename='b.txt'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        start.name = "d"  # type: ignore[misc]


def test_events_are_frozen_and_slotted() -> None:
    event = PartData(b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = b"y"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert isinstance(PartEnd(), Event)


def _tail_body(*blocks: bytes) -> bytes:
    parts = b"".join(b"--b\r\n" + block + b"\r\n\r\nx\r\n" for block in blocks)
    return parts + b"--b--\r\n"


def test_repeated_header_tail_gives_the_same_parts() -> None:
    content_type = b"\r\nContent-Type: text/plain; charset=latin-1"
    blocks = [
        b'Content-Disposition: form-data; name="a"; filename="\xe9.txt"' + content_type,
        b'content-disposition: form-data; name="b"' + content_type,
        b'Content-Disposition: form-data; name="\xc3\xa9"' + content_type,
    ]
    starts = [
        event
        for event in MultipartParser("b").feed(_tail_body(*blocks))
        if isinstance(event, PartStart)
    ]
    assert [(s.name, s.raw_filename, s.content_type, s.charset) for s in starts] == [
        ("a", "\xe9.txt", "text/plain", "latin-1"),
        ("b", None, "text/plain", "latin-1"),
        ("\xe9", None, "text/plain", "latin-1"),
    ]
    assert starts[1].headers == (
        ("content-disposition", 'form-data; name="b"'),
        ("content-type", "text/plain; charset=latin-1"),
    )


def test_a_known_header_tail_does_not_excuse_a_bad_first_line() -> None:
    content_type = b"\r\nContent-Type: text/plain"
    body = _tail_body(
        b'Content-Disposition: form-data; name="a"' + content_type,
        b'Content-Disposition: form-data; name="a\rb"' + content_type,
    )
    with pytest.raises(MalformedRequest, match="bare CR or LF"):
        MultipartParser("b").feed(body)


# -- feed_fields: the receiver's compact events ---------------------------------------


def _merge(items: list[object]) -> list[object]:
    merged: list[object] = []
    for item in items:
        if isinstance(item, PartData) and merged and isinstance(merged[-1], PartData):
            merged[-1] = PartData(merged[-1].data + item.data)
        elif not (isinstance(item, PartData) and not item.data):
            merged.append(item)
    return merged


def fields_view(events: list[object]) -> list[object]:
    """Events with each complete part collapsed to what feed_fields gives for a part in
    one piece: ``(name, body, charset)`` for a field, the start's fields and the body
    for a file."""
    out: list[object] = []
    start: PartStart | None = None
    data: list[bytes] = []
    for event in events:
        if isinstance(event, PartStart):
            start, data = event, []
        elif start is not None and isinstance(event, PartData):
            data.append(event.data)
        elif start is not None and isinstance(event, PartEnd):
            body = b"".join(data)
            if start.filename is None:
                out.append((start.name, body, start.charset))
            else:
                out.append((*dataclasses.astuple(start), body))
            start = None
        else:
            out.append(event)
    if start is not None:  # the body ended inside a part
        out.append(start)
        out.extend(PartData(d) for d in data)
    return _merge(out)


def compact_events(chunks: list[bytes], limits: Limits | None = None) -> list[object]:
    parser = MultipartParser(BOUNDARY, limits=limits or Limits())
    events: list[object] = []
    for chunk in chunks:
        events.extend(parser.feed_fields(chunk))
    parser.close()
    return fields_view(events)


def plain_events(chunks: list[bytes], limits: Limits | None = None) -> list[object]:
    parser = MultipartParser(BOUNDARY, limits=limits or Limits())
    events: list[object] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    parser.close()
    return fields_view(events)


def test_feed_fields_gives_whole_fields_and_agrees_with_feed() -> None:
    body = (
        HEAD
        + b'Content-Disposition: form-data; name="a"\r\n\r\n1\r\n--'
        + B
        + b'\r\nContent-Disposition: form-data; name="empty"\r\n\r\n\r\n--'
        + B
        + b'\r\ncontent-disposition:form-data; name="t"\r\nContent-Type: text/plain;'
        b" charset=latin-1 \r\n\r\n\xe9\r\n--"
        + B
        + b'\r\nContent-Disposition: form-data; name="f"; filename="f.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nfile\r\n--"
        + B
        + b'\r\nContent-Disposition: form-data; name="b\\"q"\r\n\r\nquoted\r\n--'
        + B
        + b'\r\nContent-Disposition: form-data; name="at-delimiter"\r\n\r\n--'
        + B
        + b"--\r\n"
    )
    parser = MultipartParser(BOUNDARY)
    whole = parser.feed_fields(body)
    parser.close()
    assert isinstance(whole[0], PartStart)  # the first part follows the preamble path
    assert ("empty", b"", None) in whole
    assert ("t", b"\xe9", "latin-1") in whole
    assert ('b"q', b"quoted", None) in whole
    assert any(
        type(e) is tuple and len(e) == 7 and e[1] == "f.txt" and e[6] == b"file" for e in whole
    )
    expected = plain_events([body])
    assert compact_events([body]) == expected
    kind, result = same_under_all_chunkings(body, compact_events)
    assert (kind, result) == ("ok", expected)


def test_feed_fields_keeps_the_field_limit() -> None:
    body = HEAD + b'Content-Disposition: form-data; name="a"\r\n\r\n' + b"x" * 11 + b"\r\n--" + B
    body = body + b"\r\n" + body[len(HEAD) :] + b"--\r\n"
    limits = Limits(max_field_size=10)
    for chunks in ([body], [body[:60], body[60:]]):
        with pytest.raises(RequestTooLarge, match="max_field_size"):
            compact_events(chunks, limits)


_HEADERS = [
    b'Content-Disposition: form-data; name="a"\r\n\r\n',
    b'content-disposition: form-data; name="b"; filename="f"\r\n\r\n',
    b'Content-Disposition: form-data; name="c"\r\n'
    b"Content-Type: text/plain; charset=latin-1\r\n\r\n",
    b'Content-Disposition: form-data; name="d"\r\n',  # headers end at the delimiter
    b'Content-Disposition: form-data; name="e\\"\r\n\r\n',  # an escape: the general path
    b"Content-Disposition: form-data\r\n\r\n",  # no name: refused
]
_DATA = [b"", b"x\xe9", b"xxxxx", b"\r\n--", b"\r\n-" + B[:5], b"\r"]


@settings(max_examples=150)
@given(st.lists(st.tuples(st.sampled_from(_HEADERS), st.sampled_from(_DATA)), max_size=6))
def test_feed_fields_agrees_with_feed(parts: list[tuple[bytes, bytes]]) -> None:
    # Whole fields, fields over max_field_size, files, empty parts at the delimiter,
    # refused parts and near-miss delimiters in data, under every chunking.
    body = b"--" + B + b"\r\n" + (b"\r\n--" + B + b"\r\n").join(h + d for h, d in parts)
    body += b"\r\n--" + B + b"--\r\n"
    limits = Limits(max_field_size=4)
    expected = same_under_all_chunkings(body, lambda c: plain_events(c, limits), randoms=2)
    got = same_under_all_chunkings(body, lambda c: compact_events(c, limits), randoms=2)
    assert got == expected
