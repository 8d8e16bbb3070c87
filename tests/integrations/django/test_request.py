"""parse_form and receive_file in views; a body already read; errors through Django."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
from django.http import UnreadablePostError
from django.test import RequestFactory, override_settings

from spoolup import FileTooLarge, Limits, UploadAborted
from spoolup.integrations.django import parse_form, receive_file
from tests.integrations.django.conftest import TEMP, files_under
from tests.integrations.django.helpers import CsrfClient, multipart
from tests.integrations.helpers import CONTENT_TYPE, EXPECTED, body, summary

NO_SPOOLUP = [
    m for m in __import__("django.conf").conf.settings.MIDDLEWARE if not m.startswith("spoolup.")
]


def test_parse_form_in_a_view_after_csrf_gets_the_same_form() -> None:
    client = CsrfClient()
    response = client.form("/form/", {"title": "t"}, {"doc": ("a.txt", b"hello", "text/plain")})
    assert response.status_code == 200, response.content
    assert response.json() == {"fields": {"title": "t"}, "files": [["a.txt", 5, True]]}
    # The view's upload_options apply to the parse CsrfViewMiddleware triggered.
    response = client.form(
        "/form/", {}, {"doc": ("a.txt", b"x" * 1001, "text/plain")}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 413
    assert response.json() == {"error": "part 'doc' exceeds the limit max_file_size=1000"}


def test_other_limits_after_the_body_was_parsed_name_the_reader() -> None:
    client = CsrfClient(raise_request_exception=True)
    with pytest.raises(RuntimeError, match=r"django\.middleware\.csrf\..*@upload_options"):
        client.form("/consumed/", {"title": "t"}, {})


def test_body_read_by_djangos_parser_names_it_and_the_fix() -> None:
    with (
        override_settings(MIDDLEWARE=NO_SPOOLUP),
        pytest.raises(RuntimeError, match=r"Django's own parser.*UploadMiddleware before"),
    ):
        CsrfClient(raise_request_exception=True).form("/form/", {"title": "t"}, {})


def test_body_read_as_a_stream_is_named() -> None:
    request = RequestFactory().generic("POST", "/form/", body(), content_type=CONTENT_TYPE)
    request.read(10)
    with pytest.raises(RuntimeError, match=r"request\.read\(\)"):
        parse_form(request)


def test_body_cached_by_request_body_is_parsed() -> None:
    request = RequestFactory().generic("POST", "/x/", body(), content_type=CONTENT_TYPE)
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None):
        assert request.body
    with parse_form(request, limits=Limits(max_file_size=4 << 20)) as form:
        assert summary(form) == EXPECTED


def test_parse_form_with_its_own_limits_leaves_nothing() -> None:
    request = RequestFactory().generic("POST", "/x/", body(), content_type=CONTENT_TYPE)
    with pytest.raises(FileTooLarge) as info:
        parse_form(request, limits=Limits(max_file_size=1 << 20))
    assert info.value.status == 413
    assert files_under(TEMP) == []


def test_raw_body_through_the_view() -> None:
    client = CsrfClient()
    data = os.urandom(3 << 20)
    response = client.client.generic(
        "PUT",
        "/raw/",
        data,
        content_type="application/octet-stream",
        HTTP_X_CSRFTOKEN=client.token,
        HTTP_X_FILENAME="../dump.bin",
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "name": "dump.bin",
    }
    assert files_under(TEMP) == []


def test_raw_body_direct() -> None:
    request = RequestFactory().generic("PUT", "/raw", b"a,b\n1,2\n", content_type="text/csv")
    file = receive_file(request, filename="table.csv")
    assert file is not None
    with file:
        assert (file.filename, file.size, file.content_type, file.read()) == (
            "table.csv",
            8,
            "text/csv",
            b"a,b\n1,2\n",
        )


@pytest.mark.parametrize("how", ["error", "short"])
def test_client_leaving_mid_body_is_an_abort(how: str) -> None:
    request = RequestFactory().generic("POST", "/x/", body(), content_type=CONTENT_TYPE)
    real_read = request.read
    calls = 0

    def cut(size: int = -1) -> bytes:
        nonlocal calls
        calls += 1
        if calls > 1:
            if how == "error":
                raise UnreadablePostError("connection reset")
            return b""
        data: bytes = real_read(1000)
        return data

    request.read = cut
    with pytest.raises(UploadAborted) as info:
        parse_form(request)
    assert info.value.status == 400
    assert files_under(TEMP) == []


def test_refusals_are_logged_on_django_security(caplog: pytest.LogCaptureFixture) -> None:
    client = CsrfClient()
    big = {"doc": ("a.txt", b"x" * 2000, "text/plain")}
    with caplog.at_level(logging.ERROR, logger="django.security"):
        response = client.form("/form/", {}, big)  # refused while CSRF reads request.POST
    assert response.status_code == 413
    records = [r for r in caplog.records if r.name == "django.security.UploadRefused"]
    assert len(records) == 1
    assert "max_file_size=1000" in records[0].getMessage()


def test_refusal_raised_by_the_view_itself(caplog: pytest.LogCaptureFixture) -> None:
    payload, content_type = multipart({}, {"doc": ("a.txt", b"x" * 2000, "text/plain")})
    no_csrf = [m for m in NO_SPOOLUP if "csrf" not in m]
    with override_settings(MIDDLEWARE=[*no_csrf, "spoolup.integrations.django.UploadMiddleware"]):
        client = CsrfClient()
        with caplog.at_level(logging.ERROR, logger="django.security"):
            response = client.post("/form/", payload, content_type, HTTP_ACCEPT="application/json")
    assert response.status_code == 413, response.content
    assert response.json() == {"error": "part 'doc' exceeds the limit max_file_size=1000"}
    assert [r.name for r in caplog.records] == ["django.security.UploadRefused"]


def test_malformed_and_unsupported(caplog: pytest.LogCaptureFixture) -> None:
    client = CsrfClient()
    response = client.post("/echo/", b"--x\r\nbroken", "multipart/form-data; boundary=x")
    assert response.status_code == 400
    assert response.content.startswith(b"400 Bad Request: ")
    response = client.post("/echo/", b"{}", "multipart/form-data")
    assert response.status_code == 400


def test_debug_page_does_not_hide_the_status() -> None:
    client = CsrfClient()
    with override_settings(DEBUG=True):
        response = client.form("/form/", {}, {"doc": ("a.txt", b"x" * 2000, "text/plain")})
    assert response.status_code == 413


def test_not_a_post_is_left_alone(tmp_path: Path) -> None:
    client = CsrfClient()
    response = client.client.get("/echo/?a=1")
    assert response.json() == {"fields": {}, "files": {}}
