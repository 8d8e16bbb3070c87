"""The upload server under attack: each test is an exploit that once worked (or could)."""

from __future__ import annotations

import io
import logging
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from spoolup.errors import UploadError
from spoolup.server.app import _content_disposition, _parse_range
from spoolup.server.inspect import inspect_image
from tests.server.conftest import RunningServer, wait_for_log
from tests.server.test_app import raw_request

TOKEN = "s3cret-token"
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def guarded(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(token=TOKEN)


def _create_upload(guarded: RunningServer) -> str:
    with guarded.client(TOKEN) as client:
        created = client.post("/tus/", headers={**TUS, "Upload-Length": "10"})
        assert created.status_code == 201
        location: str = created.headers["location"]
        return location


@pytest.mark.parametrize("override", ["DELETE", "PATCH", "HEAD", "POST", "delete"])
def test_options_with_method_override_needs_the_token(
    guarded: RunningServer, override: str
) -> None:
    location = _create_upload(guarded)
    headers = {
        **TUS,
        "X-HTTP-Method-Override": override,
        "Upload-Offset": "0",
        "Upload-Length": "4",
        "Content-Type": "application/offset+octet-stream",
    }
    with guarded.client() as client:
        for path in (location, "/tus/", "/tus"):
            response = client.request("OPTIONS", path, headers=headers, content=b"evil")
            assert response.status_code == 401, (path, response.status_code)
    with guarded.client(TOKEN) as client:  # the upload is untouched
        head = client.head(location, headers=TUS)
        assert head.status_code == 200
        assert head.headers["upload-offset"] == "0"


def test_plain_tus_options_stays_open(guarded: RunningServer) -> None:
    with guarded.client() as client:
        response = client.options("/tus/", headers={"X-HTTP-Method-Override": "OPTIONS"})
        assert response.status_code == 204
        assert client.options("/tus/").headers["tus-version"] == "1.0.0"


@pytest.mark.parametrize(
    "path",
    ["//api/files", "/api%2Ffiles", "/%61pi/files", "/api/./files", "/static/../api/files"],
)
def test_odd_paths_never_reach_the_api_without_token(guarded: RunningServer, path: str) -> None:
    response = raw_request(guarded, "GET", path)
    assert response.status in (401, 404), response.status
    response = raw_request(guarded, "GET", path, headers={"X-HTTP-Method-Override": "DELETE"})
    assert response.status in (401, 404), response.status


def test_access_log_cannot_be_forged(
    guarded: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="spoolup.access"):
        raw_request(
            guarded, "GET", "/x%0D%0Afake%20127.0.0.1%20%22GET%20/admin%22%20200%22%5C" + "a" * 5000
        )
        line = wait_for_log(caplog, "spoolup.access", "/x")
    assert "\n" not in line
    assert "\r" not in line
    assert '/x\\r\\nfake 127.0.0.1 \\"GET /admin\\" 200\\"\\\\aaa' in line
    assert len(line) < 2300


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-" + "9" * 5000, (0, 9)),
        ("bytes=-" + "9" * 5000, (0, 9)),
        ("bytes=2-" + "9" * 25, (2, 9)),
        ("bytes=\u0661-2", None),  # only ASCII digits
    ],
)
def test_range_with_huge_numbers(header: str, expected: tuple[int, int] | None) -> None:
    assert _parse_range(header, 10) == expected


def test_range_with_huge_start_is_416(guarded: RunningServer) -> None:
    with guarded.client(TOKEN) as client:
        record = client.put("/api/files/r.txt", content=b"0123456789").json()
        for start in ("9" * 5000, "9" * 25):
            response = client.get(
                f"/api/files/{record['id']}", headers={"Range": f"bytes={start}-"}
            )
            assert response.status_code == 416
            assert response.headers["content-range"] == "bytes */10"


def test_content_disposition_cannot_inject() -> None:
    value = _content_disposition('a"b\\c\r\nSet-Cookie: x=1;\u00e9\ud800.txt')
    assert "\r" not in value
    assert "\n" not in value
    assert value.isascii()
    fallback = value.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback == "a_b_c__Set-Cookie: x=1;__.txt"
    assert value.endswith("filename*=UTF-8''a%22b%5Cc%0D%0ASet-Cookie%3A%20x%3D1%3B%C3%A9%3F.txt")


def test_truncated_tiff_is_a_typed_error_even_when_warnings_are_errors() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (17, 9), "white").save(buffer, "TIFF")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cut in (139, 120, 60):
            with pytest.raises(UploadError):
                inspect_image(buffer.getvalue()[:cut], max_pixels=10**7)


def _sabotage(storage: Path, name: str, how: str, outside: Path) -> None:
    """Make ``storage/name`` something the server did not make: a file or a way out."""
    target = storage / name
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    if how == "file":
        target.write_bytes(b"not a folder")
    else:
        outside.mkdir(exist_ok=True)
        target.symlink_to(outside, target_is_directory=True)


_MULTIPART = {"files": ("a.txt", b"hello", "text/plain")}


@pytest.mark.parametrize(
    ("name", "how", "request_kind"),
    [
        ("files", "file", "post"),
        ("files", "symlink", "post"),
        ("files", "file", "put"),
        ("files", "symlink", "put"),
        ("tus", "file", "tus"),
        ("tus", "symlink", "tus"),
        (".uploads", "file", "tus"),
        (".uploads", "symlink", "tus"),
    ],
)
def test_storage_errors_never_show_server_paths(
    make_server: Callable[..., RunningServer],
    tmp_path: Path,
    name: str,
    how: str,
    request_kind: str,
) -> None:
    server = make_server()
    _sabotage(server.storage, name, how, tmp_path / "outside")
    with server.client() as client:
        if request_kind == "post":
            response = client.post("/api/files", files=_MULTIPART)
        elif request_kind == "put":
            response = client.put("/api/files/a.txt", content=b"hello")
        else:
            response = client.post("/tus/", headers={**TUS, "Upload-Length": "5"})
            if response.status_code == 201:
                response = client.patch(
                    response.headers["location"],
                    content=b"hello",
                    headers={
                        **TUS,
                        "Upload-Offset": "0",
                        "Content-Type": "application/offset+octet-stream",
                    },
                )
    assert response.status_code == 400, response.text
    for path in (server.storage, server.storage.resolve(), tmp_path, server.tmpdir):
        assert str(path) not in response.text
    assert not re.search(r"(^|[\s'\"(])/(tmp|home|root|var|srv|work|usr)/", response.text)
