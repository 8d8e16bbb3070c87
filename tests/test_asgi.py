"""The ASGI driver: headers from the scope, body from receive(), disconnects."""

from __future__ import annotations

import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from spoolup import Limits, MalformedRequest, RequestTooLarge, UnsupportedMediaType, UploadAborted
from spoolup.asgi import parse_form, receive_file, request_headers

BOUNDARY = "asgiBoundary"
CT = f"multipart/form-data; boundary={BOUNDARY}".encode()
FILE = b"0123456789" * 300_000
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


def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/", "headers": list(headers)}


class Receive:
    """An ASGI receive() over a body, in chunks, optionally disconnecting."""

    def __init__(self, body: bytes, size: int = 65536, disconnect_at: int | None = None) -> None:
        self.messages: list[dict[str, Any]] = [{"type": "lifespan.noise"}]
        chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        for i, chunk in enumerate(chunks):
            if i == disconnect_at:
                self.messages.append({"type": "http.disconnect"})
                break
            self.messages.append(
                {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            )
        self.calls = 0

    async def __call__(self) -> MutableMapping[str, Any]:
        self.calls += 1
        return self.messages.pop(0)


async def test_parse_form_with_length(tmp: Path) -> None:
    receive = Receive(BODY)
    request = scope((b"Content-Type", CT), (b"content-length", str(len(BODY)).encode()))
    async with await parse_form(request, receive) as form:
        assert form.fields["t"] == "hi"
        assert form.files["f"].read() == FILE
    assert list(tmp.iterdir()) == []


async def test_parse_form_chunked_without_length(tmp: Path) -> None:
    async with await parse_form(scope((b"content-type", CT)), Receive(BODY, 1000)) as form:
        assert form.files["f"].size == len(FILE)


async def test_declared_length_over_the_limit_is_refused_before_receiving() -> None:
    receive = Receive(BODY)
    request = scope((b"content-type", CT), (b"content-length", b"5000"))
    with pytest.raises(RequestTooLarge):
        await parse_form(request, receive, limits=Limits(max_body_size=4999))
    assert receive.calls == 0


async def test_disconnect_mid_body_cleans_up(tmp: Path) -> None:
    receive = Receive(BODY, disconnect_at=30)
    with pytest.raises(UploadAborted) as err:
        await parse_form(scope((b"content-type", CT)), receive)
    assert err.value.status == 400
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ((), UnsupportedMediaType),
        (((b"content-type", b"application/json"),), UnsupportedMediaType),
        (((b"content-type", CT), (b"content-length", b"12x")), MalformedRequest),
        (((b"content-type", CT), (b"content-length", b"-1")), MalformedRequest),
        (((b"content-type", CT), (b"content-length", b"9" * 40)), MalformedRequest),
        (
            ((b"content-type", CT), (b"content-length", b"1"), (b"content-length", b"2")),
            MalformedRequest,
        ),
    ],
)
async def test_bad_headers(
    headers: tuple[tuple[bytes, bytes], ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await parse_form(scope(*headers), Receive(BODY))


def test_request_headers() -> None:
    request = scope(
        (b"content-type", b"a/b"),
        (b"content-type", b"c/d"),
        (b"content-length", b"3"),
        (b"content-length", b" 3 "),
    )
    assert request_headers(request) == ("a/b", 3)
    assert request_headers({}) == (None, None)


async def test_receive_file(tmp: Path) -> None:
    request = scope((b"content-type", b"text/csv; charset=utf-8"), (b"content-length", b"9"))
    f = await receive_file(request, Receive(b"a,b\n1,2\n!"), filename="x.csv")
    assert f is not None
    assert (f.filename, f.content_type, f.charset, f.read()) == (
        "x.csv",
        "text/csv",
        "utf-8",
        b"a,b\n1,2\n!",
    )
    g = await receive_file(scope(), Receive(b""), filename="e", content_type="a/b")
    assert g is not None
    assert (g.size, g.content_type) == (0, "a/b")
    with pytest.raises(UploadAborted):
        await receive_file(scope(), Receive(FILE, disconnect_at=20), filename="big")
    assert list(tmp.iterdir()) == []


async def test_parse_form_as_a_context_manager_without_await(tmp: Path) -> None:
    # As Starlette's request.form(): the form is closed (temp files removed) at the end.
    async with parse_form(scope((b"content-type", CT)), Receive(BODY)) as form:
        assert form.fields["t"] == "hi"
        assert form.files["f"].read() == FILE
        assert list(tmp.iterdir())  # the large file spooled to disk
    assert form.files["f"].closed
    assert list(tmp.iterdir()) == []


async def test_parse_form_old_spelling_with_await(tmp: Path) -> None:
    async with await parse_form(scope((b"content-type", CT)), Receive(BODY)) as form:
        assert form.fields["t"] == "hi"
    assert list(tmp.iterdir()) == []


async def test_parse_form_context_manager_error_cleans_up(tmp: Path) -> None:
    request = parse_form(scope((b"content-type", CT)), Receive(BODY, disconnect_at=3))
    with pytest.raises(UploadAborted):
        async with request:
            pytest.fail("the body never completed")
    assert list(tmp.iterdir()) == []
