"""SpoolupUploadHandler under Django's own parser; a bare spoolup handler refused at start-up."""

from __future__ import annotations

import hashlib
import os

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings

from spoolup.handlers import SpooledFileHandler
from tests.integrations.django.conftest import TEMP, files_under
from tests.integrations.django.helpers import CsrfClient

MiB = 1024 * 1024
ADAPTER = "spoolup.integrations.django.SpoolupUploadHandler"
CHAIN = {"HANDLERS": ["spoolup.handlers.HashingHandler", "spoolup.handlers.SpooledFileHandler"]}


def _native_middleware() -> list[str]:
    from django.conf import settings

    return [m for m in settings.MIDDLEWARE if not m.startswith("spoolup.")]


def test_adapter_runs_the_spoolup_chain_under_djangos_parser() -> None:
    data = os.urandom(3 * MiB)
    with override_settings(
        MIDDLEWARE=_native_middleware(), FILE_UPLOAD_HANDLERS=[ADAPTER], SPOOLUP=CHAIN
    ):
        client = CsrfClient()
        response = client.form(
            "/echo/",
            {"title": "t"},
            {"small": ("a.txt", b"tiny", "text/plain"), "big": ("b.bin", data, "x/y")},
        )
    assert response.status_code == 200, response.content
    assert response.json()["files"] == {
        "small": [["a.txt", 4, "SpoolupInMemoryUploadedFile", True]],
        "big": [["b.bin", len(data), "SpoolupTemporaryUploadedFile", True]],
    }
    assert response.json()["fields"] == {"title": ["t"]}
    assert files_under(TEMP) == []


def test_adapter_hashes_and_saves_by_rename() -> None:
    data = os.urandom(3 * MiB)
    with override_settings(
        MIDDLEWARE=_native_middleware(), FILE_UPLOAD_HANDLERS=[ADAPTER], SPOOLUP=CHAIN
    ):
        client = CsrfClient()
        response = client.form(
            "/docs/new/", {"title": "r"}, {"file": ("r.pdf", data, "application/pdf")}
        )
        assert response.status_code == 302, response.content
        doc = client.client.get(response["Location"]).json()
    with open(doc["path"], "rb") as stored:
        assert hashlib.sha256(stored.read()).digest() == hashlib.sha256(data).digest()
    assert files_under(TEMP) == []


def test_adapter_applies_spoolup_file_limit() -> None:
    with override_settings(
        MIDDLEWARE=_native_middleware(),
        FILE_UPLOAD_HANDLERS=[ADAPTER],
        SPOOLUP={**CHAIN, "LIMITS": {"max_file_size": 100}},
    ):
        client = CsrfClient()
        response = client.form("/echo/", {}, {"f": ("a.bin", b"x" * 5000, "x/y")})
    assert response.status_code == 400  # Django's answer to a SuspiciousOperation
    assert files_under(TEMP) == []


@pytest.mark.parametrize(
    "middleware",
    [["spoolup.integrations.django.UploadMiddleware"], []],
)
def test_a_bare_spoolup_handler_fails_at_start_up(middleware: list[str]) -> None:
    with override_settings(
        FILE_UPLOAD_HANDLERS=["spoolup.handlers.SpooledFileHandler"], MIDDLEWARE=middleware
    ):
        if middleware:
            with pytest.raises(ImproperlyConfigured, match="SpoolupUploadHandler"):
                WSGIHandler()
        from spoolup.integrations.django import get_asgi_application

        with pytest.raises(ImproperlyConfigured, match="SpoolupUploadHandler"):
            get_asgi_application()


def test_bad_spoolup_settings_are_named() -> None:
    client = CsrfClient(raise_request_exception=True)
    for bad, words in [
        ({"LIMITS": {"max_size": 1}}, "unknown limits"),
        ({"HANDLERS": "spoolup.handlers.SpooledFileHandler"}, "list of handlers"),
        ({"HANDLER": []}, "unknown keys"),
        ({"HANDLERS": [SpooledFileHandler()]}, "instance, which concurrent requests"),
    ]:
        with override_settings(SPOOLUP=bad), pytest.raises(ImproperlyConfigured, match=words):
            client.form("/echo/", {}, {"f": ("a.txt", b"x", "text/plain")})
