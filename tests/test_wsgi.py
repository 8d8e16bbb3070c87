"""The WSGI driver: CONTENT_TYPE/CONTENT_LENGTH, wsgi.input, terminated and chunked input."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import pytest

from spoolup import Limits, MalformedRequest, RequestTooLarge, UploadAborted
from spoolup.wsgi import content_length, parse_form, receive_file

BOUNDARY = "wsgiBoundary"
CT = f"multipart/form-data; boundary={BOUNDARY}"
FILE = b"abcdefghij" * 300_000
BODY = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="t"\r\n\r\nhi\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'
    ).encode()
    + FILE
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


class Input(io.BytesIO):
    """wsgi.input that records reads and refuses to read past the declared length."""

    def __init__(self, data: bytes, limit: int | None = None) -> None:
        super().__init__(data)
        self.limit = limit
        self.reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        if self.limit is not None and (size is None or size < 0 or self.tell() + size > self.limit):
            raise AssertionError("read past the declared length: would block")
        return super().read(size)


def environ(body: bytes, **extra: Any) -> dict[str, Any]:
    return {"REQUEST_METHOD": "POST", "CONTENT_TYPE": CT, "wsgi.input": Input(body), **extra}


def test_parse_form_with_length(tmp: Path) -> None:
    env = environ(BODY, CONTENT_LENGTH=str(len(BODY)))
    env["wsgi.input"] = Input(BODY + b"next request", limit=len(BODY))
    with parse_form(env) as form:
        assert form.fields["t"] == "hi"
        assert form.files["f"].read() == FILE
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    "extra",
    [{"wsgi.input_terminated": True}, {"HTTP_TRANSFER_ENCODING": "chunked"}],
)
def test_terminated_or_chunked_input_is_read_to_the_end(tmp: Path, extra: dict[str, Any]) -> None:
    with parse_form(environ(BODY, **extra)) as form:
        assert form.files["f"].size == len(FILE)


def test_no_length_and_not_terminated_is_an_empty_body() -> None:
    env = environ(BODY)
    with pytest.raises(MalformedRequest, match="no multipart boundary"):
        parse_form(env)
    assert env["wsgi.input"].reads == 0
    with pytest.raises(MalformedRequest):
        parse_form({"CONTENT_TYPE": CT, "CONTENT_LENGTH": ""})


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    env = environ(BODY, CONTENT_LENGTH=str(len(BODY)))
    with pytest.raises(RequestTooLarge):
        parse_form(env, limits=Limits(max_body_size=100))
    assert env["wsgi.input"].reads == 0


def test_short_body_is_an_abort(tmp: Path) -> None:
    env = environ(BODY[:-1000], CONTENT_LENGTH=str(len(BODY)))
    with pytest.raises(UploadAborted, match="ended after"):
        parse_form(env)
    assert list(tmp.iterdir()) == []


class Broken(io.RawIOBase):
    def __init__(self) -> None:
        self.sent = False

    def read(self, size: int = -1, /) -> bytes:
        if self.sent:
            raise ConnectionResetError("reset by peer")
        self.sent = True
        return BODY[: 2 * 1024 * 1024]


def test_read_error_is_an_abort(tmp: Path) -> None:
    env = environ(b"", CONTENT_LENGTH=str(len(BODY)))
    env["wsgi.input"] = Broken()
    with pytest.raises(UploadAborted, match="reset by peer"):
        parse_form(env)
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("value", ["abc", "-5", "1" * 30])
def test_bad_content_length(value: str) -> None:
    with pytest.raises(MalformedRequest):
        content_length({"CONTENT_LENGTH": value})
    assert content_length({"CONTENT_LENGTH": " 12 "}) == 12
    assert content_length({}) is None


def test_receive_file(tmp: Path) -> None:
    env = {
        "CONTENT_TYPE": "image/png",
        "CONTENT_LENGTH": "4",
        "wsgi.input": Input(b"\x89PNGrest", 4),
    }
    f = receive_file(env, filename="p.png")
    assert f is not None
    assert (f.read(), f.content_type, f.filename) == (b"\x89PNG", "image/png", "p.png")
    g = receive_file(
        {"CONTENT_LENGTH": "0", "wsgi.input": Input(b"")}, filename="e", content_type="x/y"
    )
    assert g is not None
    assert (g.size, g.content_type) == (0, "x/y")


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b3", "\u0661\u0662"])
def test_non_ascii_digits_in_content_length_are_malformed(value: str) -> None:
    # WSGI servers decode header bytes as latin-1: b"\xb2" arrives as "²", which
    # str.isdigit() accepts and int() refuses.
    with pytest.raises(MalformedRequest):
        content_length({"CONTENT_LENGTH": value})
