"""The Litestar plugin: through Litestar's TestClient and over a real uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from tests.integrations.apps.litestar_app import make_app
from tests.integrations.servers import (
    Server,
    check_backup,
    check_client_leaving,
    check_image_in_memory,
    declare_only,
    multipart,
    png,
    serve,
)

IMAGE = png()
BOUNDARY = "litestarTestBoundary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:  # type: ignore[type-arg]
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with TestClient(make_app(debug=True)) as http:
        yield http


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(
        "uvicorn", "tests.integrations.apps.litestar_app:make_app", tmp_path_factory.mktemp("ls")
    ) as running:
        yield running


def test_image_in_memory_and_413_above(client: TestClient) -> None:  # type: ignore[type-arg]
    body = multipart(BOUNDARY, ("image", "me.png", IMAGE), ("title", None, b"me"))
    response = client.post("/avatar", content=body, headers={"content-type": FORM})
    assert response.status_code == 200
    assert response.json() == {"title": "me", "width": 800, "height": 800, "in_memory": True}
    big = multipart(BOUNDARY, ("image", "big.png", IMAGE + b"\0" * (2_000_001 - len(IMAGE))))
    response = client.post("/avatar", content=big, headers={"content-type": FORM})
    assert response.status_code == 413
    assert "max_file_size=2000000" in response.json()["error"]
    response = client.post("/avatar", content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 415
    assert set(response.json()) == {"error"}


def test_request_max_body_size_is_honoured(client: TestClient) -> None:  # type: ignore[type-arg]
    body = multipart(BOUNDARY, ("title", None, b"x" * 1000))
    response = client.post("/limited", content=body, headers={"content-type": FORM})
    assert response.status_code == 413
    assert response.json() == {"error": "request body exceeds the limit max_body_size=1000"}
    parts = [(f"f{i}", None, b"v") for i in range(3)] + [(f"d{i}", "d.txt", b"d") for i in range(3)]
    response = client.post(
        "/avatar", content=multipart(BOUNDARY, *parts), headers={"content-type": FORM}
    )
    assert response.status_code == 413
    assert "multipart_form_part_limit=5" in response.json()["error"]
    small = multipart(BOUNDARY, ("title", None, b"ok"))
    response = client.post("/limited", content=small, headers={"content-type": FORM})
    assert response.json() == {"fields": {"title": "ok"}}


def test_a_body_already_read_is_a_clear_error(client: TestClient) -> None:  # type: ignore[type-arg]
    # A bug, not bad input: a 500 (Litestar shows the message in debug mode), at once.
    for path, reader in [
        ("/consumed", "request.form() or a form `data` parameter"),
        ("/read-first", "request.body() or a `data` parameter"),
    ]:
        response = client.post(path, data={"title": "x"})
        assert response.status_code == 500
        assert f"RuntimeError: the request body was already read by {reader}" in response.text


@pytest.mark.slow
def test_backup_over_uvicorn_is_kept_with_its_sha256(server: Server) -> None:
    check_backup(server)


def test_image_over_uvicorn_is_never_written(server: Server) -> None:
    check_image_in_memory(server, IMAGE)
    # Litestar's default request_max_body_size (10 MB) applies where a route is silent.
    assert declare_only(server, "/avatar", 20_000_000).startswith(b"HTTP/1.1 413")
    assert server.temp_files() == []


def test_client_leaving_mid_upload_leaves_nothing(server: Server) -> None:
    check_client_leaving(server)
    assert list(server.storage.iterdir()) == []
