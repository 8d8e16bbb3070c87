"""Tests for spoolup.urlencoded: every body parsed under every chunking."""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spoolup.errors import (
    MalformedRequest,
    RequestTooLarge,
    TooManyParts,
    UnsupportedMediaType,
    UploadError,
)
from spoolup.limits import Limits
from spoolup.urlencoded import Field, URLEncodedParser
from tests.chunking import (
    assert_linear,
    best_time,
    collect_fields,
    random_chunks,
    same_under_all_chunkings,
)


def fields_of(
    chunks: list[bytes], limits: Limits | None = None, charset: str = "utf-8"
) -> list[Field]:
    return collect_fields(URLEncodedParser(limits=limits or Limits(), charset=charset), chunks)


def parse(
    body: bytes, limits: Limits | None = None, charset: str = "utf-8"
) -> list[tuple[str, str]]:
    kind, result = same_under_all_chunkings(body, lambda chunks: fields_of(chunks, limits, charset))
    assert kind == "ok", f"expected a parse, got {result}"
    assert isinstance(result, list)
    return [(f.name, f.value) for f in result]


def refused(body: bytes, limits: Limits | None = None) -> object:
    kind, result = same_under_all_chunkings(body, lambda chunks: fields_of(chunks, limits))
    assert kind == "error", f"expected an error, got {result}"
    return result


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"", [], id="empty"),
        pytest.param(b"a=1", [("a", "1")], id="one"),
        pytest.param(b"a=1&b=2&a=3", [("a", "1"), ("b", "2"), ("a", "3")], id="repeated"),
        pytest.param(b"a=1;b=2", [("a", "1;b=2")], id="semicolon-not-a-separator"),
        pytest.param(b"q=a+b%2Bc", [("q", "a b+c")], id="plus-and-escaped-plus"),
        pytest.param(b"%C3%A9t%C3%A9=%E2%82%AC", [("été", "€")], id="utf8"),
        pytest.param(b"n=%e2%82%ac", [("n", "€")], id="lowercase-hex"),
        pytest.param(b"a=100%", [("a", "100%")], id="lone-percent"),
        pytest.param(b"a=%zz%4", [("a", "%zz%4")], id="invalid-escapes-kept"),
        pytest.param(b"flag", [("flag", "")], id="no-equals"),
        pytest.param(b"=v", [("", "v")], id="empty-name"),
        pytest.param(b"a=b=c", [("a", "b=c")], id="equals-in-value"),
        pytest.param(b"a=1&&b=2&", [("a", "1"), ("b", "2")], id="empty-fields-skipped"),
        pytest.param(b"&&&", [], id="only-separators"),
        pytest.param(b"a=%26&b=%3D", [("a", "&"), ("b", "=")], id="escaped-separators"),
        pytest.param(b"a=%00", [("a", "\x00")], id="nul"),
        pytest.param(b"a=caf\xc3\xa9", [("a", "café")], id="raw-utf8"),
    ],
)
def test_parse(body: bytes, expected: list[tuple[str, str]]) -> None:
    assert parse(body) == expected


def test_other_charset() -> None:
    assert parse(b"a=caf%E9", charset="latin-1") == [("a", "café")]
    assert parse(b"a=%82%A0", charset="shift_jis") == [("a", "あ")]


@pytest.mark.parametrize(
    "charset", ["no-such-charset", "hex", "rot13", "undefined", "a\x00b", "idna"]
)
def test_unknown_charset(charset: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        URLEncodedParser(charset=charset)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"a=%FF", id="bad-utf8-escaped"),
        pytest.param(b"a=\xff", id="bad-utf8-raw"),
        pytest.param(b"%C3=1", id="truncated-in-name"),
        pytest.param(b"a=%ED%A0%80", id="surrogate"),
    ],
)
def test_bad_utf8(body: bytes) -> None:
    assert refused(body) is MalformedRequest


def test_codec_errors_are_malformed() -> None:
    with pytest.raises(MalformedRequest):
        collect_fields(URLEncodedParser(charset="punycode"), [b"a=abc-9999999"])


def test_max_fields() -> None:
    assert len(parse(b"a&" * 3, Limits(max_fields=3))) == 3
    assert refused(b"a&" * 4, Limits(max_fields=3)) is TooManyParts
    with pytest.raises(TooManyParts) as info:
        collect_fields(URLEncodedParser(limits=Limits(max_fields=3)), [b"a&" * 4])
    assert (info.value.limit, info.value.value, info.value.status) == ("max_fields", 3, 413)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"n=" + b"v" * 9, id="value"),
        pytest.param(b"n" * 11, id="name"),
        pytest.param(b"n=%41%41%41", id="escapes-count-as-sent"),
    ],
)
def test_max_field_size(body: bytes) -> None:
    limits = Limits(max_field_size=10)
    assert parse(body[:10] + b"&x", limits)  # ten bytes: fine
    assert refused(body + b"&x=1", limits) is RequestTooLarge
    with pytest.raises(RequestTooLarge) as info:
        collect_fields(URLEncodedParser(limits=limits), [body])
    assert "max_field_size=10" in info.value.message


def test_field_size_raised_while_streaming() -> None:
    parser = URLEncodedParser(limits=Limits(max_field_size=100))
    parser.feed(b"a=" + b"x" * 98)
    with pytest.raises(RequestTooLarge):
        parser.feed(b"x")  # before any "&" or close()


def test_max_body_size() -> None:
    parser = URLEncodedParser(limits=Limits(max_body_size=10))
    parser.feed(b"a=1&b=2&c=")
    with pytest.raises(RequestTooLarge) as info:
        parser.feed(b"3")
    assert info.value.limit == "max_body_size"


def test_memory_bounded_by_one_field() -> None:
    parser = URLEncodedParser()
    for _ in range(1000):
        assert parser.feed(b"a=" + b"x" * 500 + b"&")[0].value == "x" * 500
    assert parser.close() == []


@pytest.mark.parametrize(
    "build", [lambda n: b"&" * n, lambda n: b"a=" + b"%" * n], ids=["ampersands", "percents"]
)
def test_separator_flood_is_linear(build: Callable[[int], bytes]) -> None:
    single, double = (best_time(partial(_parse_flood, build(n))) for n in (1_000_000, 2_000_000))
    assert_linear(single, double, "separator flood")


def _parse_flood(body: bytes) -> None:
    collect_fields(URLEncodedParser(limits=Limits(max_field_size=5_000_000)), [body])


pairs = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=8)


@settings(max_examples=150)
@given(pairs, st.integers(0, 2**32))
def test_round_trip_with_urlencode(items: list[tuple[str, str]], seed: int) -> None:
    body = urllib.parse.urlencode(items).encode()
    rng = random.Random(seed)
    bytewise = [body[i : i + 1] for i in range(len(body))]
    for chunks in ([body], bytewise, random_chunks(body, rng, 7)):
        assert [(f.name, f.value) for f in fields_of(chunks)] == items


@settings(max_examples=200)
@given(st.binary(max_size=200), st.integers(0, 2**32))
def test_random_bytes_parse_or_raise_upload_error(body: bytes, seed: int) -> None:
    try:
        whole: object = fields_of([body])
    except UploadError as exc:
        whole = type(exc)
    try:
        chunked: object = fields_of(random_chunks(body, random.Random(seed), 9))
    except UploadError as exc:
        chunked = type(exc)
    assert chunked == whole


def test_refuses_input_after_an_error() -> None:
    parser = URLEncodedParser(limits=Limits(max_fields=1))
    with pytest.raises(TooManyParts) as first:
        parser.feed(b"a=1&b=2&")
    with pytest.raises(TooManyParts) as again:
        parser.feed(b"c=3")
    assert again.value is first.value
    with pytest.raises(TooManyParts) as again:
        parser.close()
    assert again.value is first.value
