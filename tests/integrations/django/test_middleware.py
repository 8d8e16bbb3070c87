"""UploadMiddleware through Django's test client: CSRF on, views unchanged."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from tests.integrations.django.conftest import MEDIA, TEMP, files_under
from tests.integrations.django.helpers import CsrfClient, bmp

MiB = 1024 * 1024


def test_white_image_is_checked_in_memory() -> None:
    client = CsrfClient()
    picture = bmp(830, 840)
    assert 2 * MiB - 100_000 < len(picture) <= 2 * MiB
    response = client.form("/image/", {}, {"image": ("scan.bmp", picture, "image/bmp")})
    assert response.status_code == 200, response.content
    assert response.json() == {
        "width": 830,
        "height": 840,
        "format": "BMP",
        "all_white": True,
        "type": "SpoolupInMemoryUploadedFile",
        "in_memory": True,
    }
    assert files_under(TEMP) == []
    assert files_under(MEDIA) == []


def test_image_over_the_limit_is_413_as_json_or_text() -> None:
    client = CsrfClient()
    picture = bmp(900, 900)
    response = client.form(
        "/image/", {}, {"image": ("big.bmp", picture, "image/bmp")}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 413
    assert "max_body_size" in response.json()["error"]
    response = client.form("/image/", {}, {"image": ("big.bmp", picture, "image/bmp")})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.startswith(b"413 Request Entity Too Large")
    assert files_under(TEMP) == []


def test_csrf_still_refuses_a_post_without_token() -> None:
    client = CsrfClient()
    response = client.client.post("/echo/", {"title": "x"})
    assert response.status_code == 403


def test_fields_and_files_are_django_types_with_spoolup() -> None:
    client = CsrfClient()
    big = os.urandom(3 * MiB)  # past FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): a temp file
    response = client.form(
        "/echo/",
        {"title": "holiday", "csrfmiddlewaretoken": client.token},
        {
            "doc": ("../notes.txt", b"tiny", "text/plain"),
            "big": ("big.bin", big, "application/octet-stream"),
        },
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "fields": {"title": ["holiday"], "csrfmiddlewaretoken": [client.token]},
        "files": {
            "doc": [["notes.txt", 4, "SpoolupInMemoryUploadedFile", True]],
            "big": [["big.bin", 3 * MiB, "SpoolupTemporaryUploadedFile", True]],
        },
    }
    assert files_under(TEMP) == []  # closed with the response


def test_token_as_a_form_field() -> None:
    client = CsrfClient()
    from tests.integrations.django.helpers import multipart

    body, content_type = multipart({"csrfmiddlewaretoken": client.token, "a": "1"}, {})
    response = client.client.generic("POST", "/echo/", body, content_type=content_type)
    assert response.status_code == 200
    assert response.json()["fields"]["a"] == ["1"]


def test_modelform_saves_to_filefield_by_rename() -> None:
    client = CsrfClient()
    data = os.urandom(3 * MiB)
    seen: dict[str, int] = {}
    from django.db.models.signals import pre_save

    def inode(sender: object, instance: object, **kwargs: object) -> None:
        upload = instance.file.file  # type: ignore[attr-defined]
        seen["inode"] = os.stat(upload.temporary_file_path()).st_ino

    from tests.integrations.django.project.uploads.models import Document

    pre_save.connect(inode, sender=Document)
    try:
        response = client.form(
            "/docs/new/", {"title": "report"}, {"file": ("report.pdf", data, "application/pdf")}
        )
    finally:
        pre_save.disconnect(inode, sender=Document)
    assert response.status_code == 302, response.content
    doc = client.client.get(response["Location"]).json()
    assert doc["title"] == "report"
    assert doc["name"] == "docs/report.pdf"
    stored = os.stat(doc["path"])
    assert stored.st_ino == seen["inode"]  # moved, not copied
    assert stored.st_mode & 0o777 == 0o644  # FILE_UPLOAD_PERMISSIONS
    assert Path(doc["path"]).read_bytes() == data
    assert files_under(TEMP) == []


def test_urlencoded_form() -> None:
    client = CsrfClient()
    response = client.post("/echo/", b"a=1&a=2&b=%C3%A9", "application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert response.json()["fields"] == {"a": ["1", "2"], "b": ["é"]}


@pytest.mark.parametrize(
    ("setting", "value", "fields", "files", "limit"),
    [
        ("DATA_UPLOAD_MAX_NUMBER_FIELDS", 3, 4, 0, "max_fields"),
        ("DATA_UPLOAD_MAX_NUMBER_FILES", 2, 0, 3, "max_files"),
        ("DATA_UPLOAD_MAX_MEMORY_SIZE", 1000, 3, 0, "DATA_UPLOAD_MAX_MEMORY_SIZE"),
    ],
)
def test_limits_from_django_settings(
    setting: str, value: int, fields: int, files: int, limit: str
) -> None:
    client = CsrfClient()
    with override_settings(**{setting: value}):
        response = client.form(
            "/echo/",
            {f"f{i}": "x" * 400 for i in range(fields)},
            {f"file{i}": (f"{i}.txt", b"data", "text/plain") for i in range(files)},
            HTTP_ACCEPT="application/json",
        )
    assert response.status_code == 413, response.content
    assert limit in response.json()["error"]


def test_memory_threshold_and_temp_dir_from_django_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = CsrfClient()
    made: list[Path] = []
    mkstemp = tempfile.mkstemp

    def spy(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = mkstemp(*args, **kwargs)
        made.append(Path(name))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    files = {
        "a": ("a.txt", b"0123456789", "text/plain"),
        "b": ("b.txt", b"0123456789+", "text/plain"),
    }
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=10, FILE_UPLOAD_TEMP_DIR=str(tmp_path)):
        response = client.form("/echo/", {}, files)
    assert response.status_code == 200, response.content
    assert response.json()["files"] == {
        "a": [["a.txt", 10, "SpoolupInMemoryUploadedFile", True]],
        "b": [["b.txt", 11, "SpoolupTemporaryUploadedFile", True]],
    }
    assert [p.parent for p in made] == [tmp_path]
    assert list(tmp_path.iterdir()) == []


def test_spoolup_setting_wins_over_django() -> None:
    client = CsrfClient()
    with override_settings(
        DATA_UPLOAD_MAX_NUMBER_FILES=1, SPOOLUP={"LIMITS": {"max_files": 2, "max_file_size": 5}}
    ):
        ok = client.form(
            "/echo/", {}, {f"f{i}": ("a.txt", b"12345", "text/plain") for i in range(2)}
        )
        too_big = client.form("/echo/", {}, {"f": ("a.txt", b"123456", "text/plain")})
    assert ok.status_code == 200, ok.content
    assert too_big.status_code == 413
    assert b"max_file_size=5" in too_big.content


def test_admin_adds_a_document_with_its_file() -> None:
    from django.contrib.auth.models import User

    from tests.integrations.django.project.uploads.models import Document

    admin = User.objects.create_superuser("admin", "a@example.com", "pw")
    client = CsrfClient()
    client.client.force_login(admin)
    add = "/admin/uploads/document/add/"
    assert client.client.get(add).status_code == 200
    data = os.urandom(3 * MiB)
    response = client.form(
        add,
        {"csrfmiddlewaretoken": client.token, "title": "from admin"},
        {"file": ("admin.bin", data, "application/octet-stream")},
    )
    assert response.status_code == 302, response.content[:2000]
    doc = Document.objects.get(title="from admin")
    assert Path(doc.file.path).read_bytes() == data
    assert files_under(TEMP) == []
