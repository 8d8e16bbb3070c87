"""Tests for spoolup.headers: parameters, boundaries, filename safety."""

from __future__ import annotations

import contextlib
import unicodedata
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolup.errors import MalformedRequest, UnsupportedMediaType, UploadError
from spoolup.headers import (
    check_boundary,
    decode_header_value,
    form_data_disposition,
    media_type,
    multipart_boundary,
    parse_options_header,
    percent_decode,
    safe_filename,
)
from tests.chunking import assert_linear, best_time

# --- parse_options_header ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("text/plain", ("text/plain", {}), id="bare"),
        pytest.param("  Text/HTML  ", ("text/html", {}), id="bare-case-space"),
        pytest.param("text/plain; charset=UTF-8", ("text/plain", {"charset": "UTF-8"}), id="token"),
        pytest.param(
            'form-data; name="a b"; filename="c;d.txt"',
            ("form-data", {"name": "a b", "filename": "c;d.txt"}),
            id="quoted-with-semicolon",
        ),
        pytest.param('form-data; NAME="x"', ("form-data", {"name": "x"}), id="name-lowercased"),
        pytest.param(r'form-data; name="a\"b\\c"', ("form-data", {"name": 'a"b\\c'}), id="escapes"),
        pytest.param(
            r'form-data; name="\"\"\""', ("form-data", {"name": '"""'}), id="escaped-quotes"
        ),
        pytest.param('form-data; name=""', ("form-data", {"name": ""}), id="empty-quoted"),
        pytest.param("form-data; name=", ("form-data", {"name": ""}), id="empty-token"),
        pytest.param("form-data ;  name = x ; ", ("form-data", {"name": "x"}), id="loose-spacing"),
        pytest.param(
            'form-data; name="x" ; filename="y"',
            ("form-data", {"name": "x", "filename": "y"}),
            id="space-after-quote",
        ),
        pytest.param("a;;b=1;", ("a", {"b": "1"}), id="empty-parameters"),
        pytest.param(
            "attachment; filename*=UTF-8''na%C3%AFve%20file.txt",
            ("attachment", {"filename*": "naïve file.txt"}),
            id="rfc5987-utf8",
        ),
        pytest.param(
            "attachment; filename*=iso-8859-1'en'%A3%20rates.txt",
            ("attachment", {"filename*": "£ rates.txt"}),
            id="rfc5987-latin1",
        ),
        pytest.param(
            "attachment; filename*=\"utf-8''%E2%82%AC.txt\"",
            ("attachment", {"filename*": "€.txt"}),
            id="rfc5987-quoted",
        ),
        pytest.param(
            "multipart/form-data; boundary=----WebKitFormBoundaryABC",
            ("multipart/form-data", {"boundary": "----WebKitFormBoundaryABC"}),
            id="content-type",
        ),
    ],
)
def test_parse_options_header(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_options_header(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('form-data; name="a"; name="a"', id="duplicate-same"),
        pytest.param('form-data; name="a"; NAME="b"', id="duplicate-case"),
        pytest.param("form-data; filename*=utf-8''a; filename*=utf-8''a", id="duplicate-ext"),
        pytest.param('form-data; name="a', id="unterminated"),
        pytest.param('form-data; name="a\\"', id="unterminated-escaped-quote"),
        pytest.param('form-data; name="a"b', id="text-after-quote"),
        pytest.param("form-data; name", id="no-equals"),
        pytest.param('form-data; ="x"', id="empty-name"),
        pytest.param('form-data; na me="x"', id="space-in-name"),
        pytest.param("a; f*=utf-8'x", id="ext-one-quote"),
        pytest.param("a; f*=koi8-r''abc", id="ext-charset"),
        pytest.param("a; f*=utf-8''%FF", id="ext-bad-utf8"),
        pytest.param("a; f*=utf-8''%G1", id="ext-bad-escape"),
        pytest.param("a; f*=us-ascii''%C3%A9", id="ext-not-ascii"),
        pytest.param("a; f*=utf-8''é", id="ext-raw-non-ascii"),
    ],
)
def test_parse_options_header_refuses(value: str) -> None:
    with pytest.raises(MalformedRequest):
        parse_options_header(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('form-data; name="' + "\\" * 400_000 + '"', id="backslashes"),
        pytest.param('form-data; name="' + '\\"' * 200_000 + '"', id="escaped-quotes"),
        pytest.param("form-data" + "; a=1" * 100_000, id="many-parameters"),
        pytest.param("form-data" + ";" * 400_000, id="semicolons"),
        pytest.param("form-data; a=" + '"' * 400_000, id="quotes"),
        pytest.param("form-data; a" + "=" * 400_000, id="equals"),
        pytest.param('form-data; n="' + ";" * 400_000, id="unterminated-semicolons"),
        pytest.param("form-data; " + " " * 400_000 + "a=1", id="spaces"),
    ],
)
def test_parse_options_header_linear_time(value: str) -> None:
    # Twice the hostile header (400 KB, then 800 KB), about twice the time.
    half = value[: len(value) // 2] + value[-1]
    single, double = (best_time(partial(_parse_quietly, v)) for v in (half, value))
    assert_linear(single, double, "parse_options_header")


def _parse_quietly(value: str) -> None:
    with contextlib.suppress(MalformedRequest):
        parse_options_header(value)


@given(st.text(max_size=200))
def test_parse_options_header_any_text(value: str) -> None:
    try:
        main, params = parse_options_header(value)
    except UploadError:
        return
    assert main == main.lower()
    assert all(name == name.lower() for name in params)


@given(st.text(alphabet=st.characters(blacklist_characters='"\\'), max_size=40))
def test_quoted_round_trip(text: str) -> None:
    assert parse_options_header(f'x; p="{text}"') == ("x", {"p": text})


# --- form_data_disposition ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('form-data; name="a"', ("a", None), id="field"),
        pytest.param('form-data; name="a"; filename="b.txt"', ("a", "b.txt"), id="file"),
        pytest.param('form-data; name="a"; filename=""', ("a", ""), id="empty-filename"),
        pytest.param('Form-Data; Name="a"', ("a", None), id="case"),
        pytest.param(r'form-data; name="a\"b"', ('a"b', None), id="escaped-name"),
        pytest.param(r'form-data; name="a"; filename="x\\y"', ("a", "x\\y"), id="escaped-filename"),
        pytest.param(
            r'form-data; name="a"; filename="C:\dir\x.txt"',
            ("a", "C:\\dir\\x.txt"),
            id="backslash-kept",
        ),
        pytest.param(r'form-data; name="a"; filename="\x\\"', ("a", "\\x\\"), id="mixed"),
        pytest.param(
            'form-data; name="f"; filename="same.txt"; filename*=utf-8\'\'same.txt',
            ("f", "same.txt"),
            id="filename-agree",
        ),
        pytest.param("form-data; name*=utf-8''%C3%A9", ("é", None), id="name-star-only"),
        pytest.param("form-data; name=\"x\"; name*=utf-8''x", ("x", None), id="name-agree"),
        pytest.param(
            "form-data; name=\"f\"; filename*=utf-8''only.txt", ("f", "only.txt"), id="star-only"
        ),
        pytest.param('form-data; name="a"; filename="b"; size=3', ("a", "b"), id="extra-parameter"),
    ],
)
def test_form_data_disposition(value: str, expected: tuple[str, str | None]) -> None:
    assert form_data_disposition(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('attachment; name="a"', id="not-form-data"),
        pytest.param("form-data", id="no-name"),
        pytest.param('form-data; filename="a"', id="filename-no-name"),
        pytest.param(
            'form-data; name="f"; filename="a.txt"; filename*=utf-8\'\'b.exe',
            id="filename-disagree",
        ),
        pytest.param(
            # RFC 6266's ASCII fallback: two readers could pick two names, so refused.
            'form-data; name="f"; filename="e.txt"; filename*=utf-8\'\'%C3%A9.txt',
            id="filename-ascii-fallback",
        ),
        pytest.param("form-data; name=\"a\"; name*=utf-8''b", id="name-disagree"),
        pytest.param('form-data; name="a"; name="b"', id="name-twice"),
        pytest.param('form-data; name="a"; filename="x"; filename="y"', id="filename-twice"),
        pytest.param(
            'form-data; name="a"; filename="x"; filename*="y"', id="filename-star-malformed"
        ),
    ],
)
def test_form_data_disposition_refuses(value: str) -> None:
    with pytest.raises(MalformedRequest):
        form_data_disposition(value)


@given(
    st.text(max_size=20),
    st.one_of(st.none(), st.text(max_size=20)),
)
def test_fast_path_agrees_with_parser(name: str, filename: str | None) -> None:
    # The quick split-based path must give what the full parser gives.
    value = f'form-data; name="{name}"'
    if filename is not None:
        value += f'; filename="{filename}"'
    try:
        got: object = form_data_disposition(value)
    except MalformedRequest:
        got = MalformedRequest
    try:
        _kind, params = parse_options_header(value)
        want: object = (params["name"], params.get("filename"))
    except MalformedRequest:
        want = MalformedRequest
    assert got == want


# --- boundaries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        pytest.param("multipart/form-data; boundary=abc", b"abc", id="token"),
        pytest.param('multipart/form-data; boundary="a b:c"', b"a b:c", id="quoted-space"),
        pytest.param("Multipart/Form-Data; Boundary=X", b"X", id="case"),
        pytest.param("multipart/form-data; boundary=" + "z" * 70, b"z" * 70, id="70-chars"),
        pytest.param('multipart/form-data; boundary="\'()+_,-./:=?"', b"'()+_,-./:=?", id="bchars"),
        pytest.param(
            "multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundaryq1",
            b"----WebKitFormBoundaryq1",
            id="chromium",
        ),
    ],
)
def test_multipart_boundary(content_type: str, boundary: bytes) -> None:
    assert multipart_boundary(content_type) == boundary


@pytest.mark.parametrize(
    ("content_type", "error"),
    [
        pytest.param("multipart/form-data", MalformedRequest, id="missing"),
        pytest.param('multipart/form-data; boundary=""', MalformedRequest, id="empty"),
        pytest.param("multipart/form-data; boundary=" + "z" * 71, MalformedRequest, id="71-chars"),
        pytest.param('multipart/form-data; boundary="ab "', MalformedRequest, id="ends-space"),
        pytest.param("multipart/form-data; boundary=a\tb", MalformedRequest, id="tab"),
        pytest.param('multipart/form-data; boundary="a\\"b"', MalformedRequest, id="quote"),
        pytest.param("multipart/form-data; boundary=é", MalformedRequest, id="non-ascii"),
        pytest.param("multipart/form-data; boundary=a; boundary=b", MalformedRequest, id="twice"),
        pytest.param("multipart/mixed; boundary=abc", UnsupportedMediaType, id="mixed"),
        pytest.param("application/json", UnsupportedMediaType, id="json"),
    ],
)
def test_multipart_boundary_refuses(content_type: str, error: type[UploadError]) -> None:
    with pytest.raises(error):
        multipart_boundary(content_type)


def test_check_boundary_bytes() -> None:
    assert check_boundary(b"abc") == b"abc"
    with pytest.raises(MalformedRequest):
        check_boundary(b"a\r\nb")


# --- percent_decode and decode_header_value --------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"abc", b"abc"),
        (b"%41%62c", b"Abc"),
        (b"%e2%82%AC", b"\xe2\x82\xac"),
        (b"100%", b"100%"),
        (b"%%41", b"%A"),
        (b"%4", b"%4"),
        (b"%zz%", b"%zz%"),
    ],
)
def test_percent_decode_lenient(raw: bytes, expected: bytes) -> None:
    assert percent_decode(raw, strict=False) == expected


def test_percent_decode_strict() -> None:
    assert percent_decode(b"%41", strict=True) == b"A"
    with pytest.raises(MalformedRequest):
        percent_decode(b"100%", strict=True)


def test_decode_header_value() -> None:
    assert decode_header_value("é€".encode()) == "é€"
    assert decode_header_value(b"caf\xe9") == "café"  # not UTF-8: ISO-8859-1


# --- safe_filename ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("report.pdf", "report.pdf", id="plain"),
        pytest.param("naïve café.txt", "naïve café.txt", id="unicode"),
        pytest.param("../../etc/passwd", "passwd", id="dotdot-slash"),
        pytest.param("..\\..\\windows\\win.ini", "win.ini", id="dotdot-backslash"),
        pytest.param("C:\\Users\\me\\photo.jpg", "photo.jpg", id="windows-path"),
        pytest.param("C:photo.jpg", "photo.jpg", id="windows-drive"),
        pytest.param("a:b", "b", id="one-letter-drive"),
        pytest.param("ab:c", "ab:c", id="colon-kept"),
        pytest.param("/abs/path/x.txt", "x.txt", id="absolute"),
        pytest.param("dir/", "upload", id="trailing-slash"),
        pytest.param("", "upload", id="empty"),
        pytest.param(".", "upload", id="dot"),
        pytest.param("..", "upload", id="dotdot"),
        pytest.param("a/..", "upload", id="ends-dotdot"),
        pytest.param("   ", "upload", id="blank"),
        pytest.param("  a.txt  ", "a.txt", id="surrounding-space"),
        pytest.param("a\x00b.txt", "ab.txt", id="nul"),
        pytest.param("a\r\nb.txt", "ab.txt", id="crlf"),
        pytest.param("a\x1b[31mb.txt", "a[31mb.txt", id="escape"),
        pytest.param("\x7f\x85x", "x", id="del-c1"),
        pytest.param("evil\u202etxt.exe", "eviltxt.exe", id="rlo"),
        pytest.param("\u202a\u202b\u202c\u202d\u202ea", "a", id="embeddings"),
        pytest.param("\u2066\u2067\u2068\u2069a", "a", id="isolates"),
        pytest.param("\u200e\u200f\u061ca", "a", id="marks"),
        pytest.param("a\u200bb\ufeff", "ab", id="zero-width"),
        pytest.param("a\u2028b\u2029c", "abc", id="separators"),
        pytest.param("\ud800x.txt", "x.txt", id="lone-surrogate"),
        pytest.param("\u202e", "upload", id="only-override"),
        pytest.param("...", "...", id="three-dots"),
        pytest.param(".bashrc", ".bashrc", id="dotfile"),
    ],
)
def test_safe_filename(raw: str, expected: str) -> None:
    assert safe_filename(raw) == expected


def test_safe_filename_truncates_keeping_extension() -> None:
    name = safe_filename("a" * 300 + ".tar.gz")
    assert name == "a" * (255 - 3) + ".gz"
    assert len(name.encode()) == 255


def test_safe_filename_never_splits_a_character() -> None:
    name = safe_filename("é" * 200 + ".txt")  # 400 bytes of UTF-8 before the extension
    assert name.endswith(".txt")
    assert len(name.encode()) <= 255
    assert name == "é" * 125 + ".txt"  # 250 + 4 bytes: a 126th é would make 256


def test_safe_filename_long_extension_not_kept() -> None:
    name = safe_filename("x." + "e" * 300)
    assert len(name.encode()) == 255
    assert name == ("x." + "e" * 300)[:255]


def test_safe_filename_four_byte_characters() -> None:
    name = safe_filename("😀" * 100)  # 400 bytes
    assert name == "😀" * 63  # 252 bytes; a 64th would make 256


@given(st.text(max_size=400))
def test_safe_filename_properties(raw: str) -> None:
    name = safe_filename(raw)
    assert name not in ("", ".", "..")
    assert "/" not in name
    assert "\\" not in name
    assert len(name.encode("utf-8")) <= 255
    assert name == name.strip()
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name)
    assert not any(0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069 for ch in name)
    assert safe_filename(name) == name  # idempotent


# --- media_type ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("text/plain", ("text/plain", None), id="plain"),
        pytest.param("Image/JPEG", ("image/jpeg", None), id="lowercased"),
        pytest.param("text/plain; charset=UTF-8", ("text/plain", "UTF-8"), id="charset"),
        pytest.param('text/plain; charset="utf-8"', ("text/plain", "utf-8"), id="quoted-charset"),
        pytest.param('text/plain; charset="a b"', ("text/plain", None), id="bad-charset"),
        pytest.param("text/plain; charset=" + "x" * 65, ("text/plain", None), id="long-charset"),
        pytest.param("application/vnd.a+json", ("application/vnd.a+json", None), id="suffix"),
        pytest.param("text", ("application/octet-stream", None), id="no-subtype"),
        pytest.param("text/", ("application/octet-stream", None), id="empty-subtype"),
        pytest.param("a/b/c", ("application/octet-stream", None), id="two-slashes"),
        pytest.param("t\u00ebxt/plain", ("application/octet-stream", None), id="non-ascii"),
        pytest.param("text/pl\x01ain", ("application/octet-stream", None), id="control"),
        pytest.param("text/pl ain", ("application/octet-stream", None), id="space"),
        pytest.param("a/" + "b" * 254, ("application/octet-stream", None), id="too-long"),
        pytest.param("text/plain; x", ("application/octet-stream", None), id="bad-params"),
        pytest.param("", ("application/octet-stream", None), id="empty"),
    ],
)
def test_media_type(value: str, expected: tuple[str, str | None]) -> None:
    assert media_type(value) == expected
