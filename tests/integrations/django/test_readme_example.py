"""README.md's Django example, run as written: its settings, its asgi.py and its views."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import types
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from django.test import override_settings
from django.urls import path

from tests.integrations.django.conftest import MEDIA, TEMP, files_under
from tests.integrations.django.helpers import CsrfClient, bmp, multipart
from tests.integrations.django.project.uploads import views as project_views
from tests.integrations.helpers import readme_code


def _parts() -> dict[str, str]:
    """The example's three files (``# settings.py``, ``# asgi.py``, ``# views.py``)."""
    (code,) = readme_code("## Django")
    pieces = re.split(r"^# (settings|asgi|views)\.py.*$", code, flags=re.M)
    return dict(zip(pieces[1::2], pieces[2::2], strict=True))


@pytest.fixture(scope="module")
def readme() -> Iterator[dict[str, Any]]:
    """The example's settings in force, with its views at ``/avatar/`` and ``/backup/``."""
    parts = _parts()
    settings: dict[str, Any] = {}
    exec(compile(parts["settings"], "README.md (settings.py)", "exec"), settings)
    views = types.ModuleType("readme_django_views")
    exec(compile(parts["views"], "README.md (views.py)", "exec"), views.__dict__)
    urls = types.ModuleType("readme_django_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("avatar/", views.avatar),
        path("backup/", views.backup),
        path("csrf/", project_views.csrf),
    ]
    sys.modules[urls.__name__] = urls
    chosen = {"MIDDLEWARE": settings["MIDDLEWARE"], "SPOOLUP": settings["SPOOLUP"]}
    with override_settings(ROOT_URLCONF=urls.__name__, **chosen):
        yield {"asgi": parts["asgi"]}
    del sys.modules[urls.__name__]


def _check_backup(answer: dict[str, Any], data: bytes) -> None:
    assert answer["name"].startswith(f"backups/{datetime.now().year}/")
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert (MEDIA / answer["name"]).read_bytes() == data
    assert files_under(TEMP) == []  # straight into the storage, no temp copy


def test_readme_views_under_wsgi(readme: dict[str, Any]) -> None:
    client = CsrfClient()
    picture = bmp(40, 30)
    response = client.form("/avatar/", {}, {"image": ("a.bmp", picture, "image/bmp")})
    assert response.status_code == 200, response.content
    assert response.json() == {"size": len(picture)}
    too_big = b"x" * (2 * 1024 * 1024 + 1)
    response = client.form("/avatar/", {}, {"image": ("a.bmp", too_big, "image/bmp")})
    assert response.status_code == 413
    data = os.urandom(300_000)
    response = client.form("/backup/", {}, {"backup": ("site.tar", data, "application/x-tar")})
    assert response.status_code == 201, response.content
    _check_backup(response.json(), data)


async def test_readme_asgi_application(readme: dict[str, Any]) -> None:
    asgi: dict[str, Any] = {}
    exec(compile(readme["asgi"], "README.md (asgi.py)", "exec"), asgi)
    transport = httpx.ASGITransport(app=asgi["application"])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        token = (await client.get("/csrf/")).text
        data = os.urandom(300_000)
        body, content_type = multipart({}, {"backup": ("site.tar", data, "application/x-tar")})
        headers = {"Content-Type": content_type, "X-CSRFToken": token}
        response = await client.post("/backup/", content=body, headers=headers)
    assert response.status_code == 201, response.text
    _check_backup(response.json(), data)
