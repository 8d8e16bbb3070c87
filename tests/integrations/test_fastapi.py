"""spoolup in a FastAPI app: through FastAPI's TestClient and over a real uvicorn."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, UploadFile
from fastapi.testclient import TestClient

from spoolup import Limits
from spoolup.integrations.starlette import install
from tests.integrations.apps.fastapi_app import app
from tests.integrations.servers import (
    Server,
    check_backup,
    check_client_leaving,
    check_image_in_memory,
    multipart,
    png,
    serve,
)

IMAGE = png()  # about 1.9 MB
BOUNDARY = "fastapiTestBoundary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("SPOOLUP_TEST_STORAGE", str(tmp_path))
    with TestClient(app) as http:
        yield http


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(
        "uvicorn", "tests.integrations.apps.fastapi_app:make_app", tmp_path_factory.mktemp("fa")
    ) as running:
        yield running


def test_image_is_checked_in_memory_and_413_above_the_limit(client: TestClient) -> None:
    files = {"image": ("me.png", IMAGE, "image/png")}
    response = client.post("/avatar", files=files, data={"title": "me"})
    assert response.status_code == 200
    assert response.json() == {
        "title": "me",
        "width": 800,
        "height": 800,
        "in_memory": True,
        "on_disk": False,
    }
    too_big = {"image": ("big.png", IMAGE + b"\0" * (2_000_001 - len(IMAGE)), "image/png")}
    response = client.post("/avatar", files=too_big)
    assert response.status_code == 413
    assert "max_file_size=2000000" in response.json()["error"]


def test_upload_errors_are_json_with_their_status_and_422_stays(client: TestClient) -> None:
    response = client.post("/avatar", json={"image": "nope"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["error"]
    response = client.post("/avatar", content=b"--x\r\n", headers={"content-type": FORM})
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    response = client.get("/items/not-a-number")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "item_id"]


def test_the_route_max_body_size_is_honoured_before_reading(client: TestClient) -> None:
    body = multipart(BOUNDARY, ("title", None, b"x" * 1_000_001))
    # Declared too long: refused before a byte is read (Starlette writes the answer).
    response = client.post("/limited", content=body, headers={"content-type": FORM})
    assert response.status_code == 413
    # Chunked, no length: refused once the limit is crossed.
    chunks = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    response = client.post("/limited", content=chunks, headers={"content-type": FORM})
    assert response.status_code == 413
    small = multipart(BOUNDARY, ("title", None, b"ok"))
    response = client.post("/limited", content=small, headers={"content-type": FORM})
    assert response.json() == {"fields": {"title": "ok"}}


def test_fastapi_form_limits_apply(client: TestClient) -> None:
    files = [("doc", ("a.txt", b"a")), ("doc", ("b.txt", b"b"))]
    response = client.post("/few", files=files)
    assert response.status_code == 413
    assert "max_files=1" in response.json()["error"]
    response = client.post("/few", data={"title": "x" * 11})
    assert response.status_code == 413
    assert "max_field_size=10" in response.json()["error"]
    response = client.post("/few", data={f"f{i}": "v" for i in range(21)})  # the app's
    assert response.status_code == 413
    assert "max_fields=20" in response.json()["error"]
    response = client.post("/few", data={"title": "ok"}, files=files[:1])
    assert response.json() == {"fields": 1, "files": 1}


def test_a_body_already_read_is_a_clear_error_at_once(client: TestClient) -> None:
    with pytest.raises(RuntimeError, match=r"already read by request\.form\(\)"):
        client.post("/consumed", data={"title": "x"})
    with pytest.raises(RuntimeError, match=r"already read by request\.body\(\)"):
        client.post("/read-first", data={"title": "x"})


def test_the_form_is_closed_after_the_response(client: TestClient, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)  # past the memory threshold: a temp file
    response = client.post("/echo", files={"file": ("big.bin", data)})
    assert response.content == data
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []


def test_raw_body_as_one_file(client: TestClient) -> None:
    response = client.put("/files/notes.txt", content=b"hello")
    assert response.json() == {"filename": "notes.txt", "size": 5, "content": "hello"}


def test_openapi_documents_the_body_as_fastapi_documents_upload_file(client: TestClient) -> None:
    reference = FastAPI()

    @reference.post("/native")
    async def native(image: UploadFile) -> None: ...

    ref = reference.openapi()
    ref_body = ref["components"]["schemas"]["Body_native_native_post"]["properties"]["image"]
    ref_body.pop("title")
    operation = client.get("/openapi.json").json()["paths"]["/avatar"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["image"] == ref_body
    assert schema["properties"]["title"] == {"type": "string"}
    assert {"400", "413", "415"} <= set(operation["responses"])
    assert operation["responses"]["413"]["content"]["application/json"]["schema"]["properties"]
    raw = client.get("/openapi.json").json()["paths"]["/files/{filename}"]["put"]
    assert raw["requestBody"]["content"]["application/octet-stream"]["schema"] == ref_body
    # A route without spoolup keeps FastAPI's own documentation.
    assert (
        "requestBody" not in client.get("/openapi.json").json()["paths"]["/items/{item_id}"]["get"]
    )


def test_install_on_a_plain_starlette_app_maps_errors() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from spoolup.integrations.starlette import parse_form

    async def view(request: Request) -> JSONResponse:
        async with await parse_form(request, limits=Limits(max_file_size=5)):
            return JSONResponse({})

    plain = Starlette(routes=[Route("/", view, methods=["POST"])])
    install(plain)
    with TestClient(plain) as http:
        response = http.post("/", files={"a": ("a.txt", b"0123456789")})
    assert response.status_code == 413
    assert response.json() == {"error": "part 'a' exceeds the limit max_file_size=5"}


@pytest.mark.slow
def test_backup_over_uvicorn_is_kept_with_its_sha256(server: Server) -> None:
    check_backup(server)


def test_image_over_uvicorn_is_never_written(server: Server) -> None:
    check_image_in_memory(server, IMAGE)


def test_consumed_body_over_uvicorn_answers_at_once(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post("/consumed", data={"title": "x"})
    assert response.status_code == 500  # a programming error, raised before any wait


def test_client_leaving_mid_upload_leaves_nothing(server: Server) -> None:
    check_client_leaving(server)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/items/1").json() == {"item_id": 1}
    assert list(server.storage.iterdir()) == []
