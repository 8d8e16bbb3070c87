import os
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from spoolup import Limits, UploadError
from spoolup.integrations.starlette import parse_form, receive_file
from tests.integrations.helpers import CONTENT_TYPE, EXPECTED, body, summary


async def form_view(request: Request) -> JSONResponse:
    try:
        async with await parse_form(request, limits=Limits(max_file_size=4 << 20)) as form:
            return JSONResponse(summary(form))
    except UploadError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)


async def raw_view(request: Request) -> JSONResponse:
    file = await receive_file(request, filename=request.path_params["name"])
    assert file is not None
    with file:
        return JSONResponse([file.filename, file.size, file.content_type])


app = Starlette(
    routes=[
        Route("/form", form_view, methods=["POST"]),
        Route("/raw/{name}", raw_view, methods=["PUT"]),
    ]
)


@pytest.fixture
def tmpdir_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_form_through_starlette(tmpdir_empty: Path) -> None:
    async with client() as http:
        response = await http.post("/form", content=body(), headers={"content-type": CONTENT_TYPE})
    assert response.status_code == 200
    assert response.json() == EXPECTED
    assert os.listdir(tmpdir_empty) == []


async def test_limit_is_the_upload_error_status(tmpdir_empty: Path) -> None:
    big = body().replace(b"holiday", b"x" * (2 << 20))
    async with client() as http:
        response = await http.post("/form", content=big, headers={"content-type": CONTENT_TYPE})
    assert response.status_code == 413
    assert "max_field_size" in response.json()["error"]
    assert os.listdir(tmpdir_empty) == []


async def test_raw_body(tmpdir_empty: Path) -> None:
    async with client() as http:
        response = await http.put(
            "/raw/r%C3%A9sum%C3%A9%0A.txt", content=b"hello", headers={"content-type": "text/plain"}
        )
    assert response.json() == ["résumé.txt", 5, "text/plain"]
    assert os.listdir(tmpdir_empty) == []


async def test_a_body_read_by_a_middleware_is_a_clear_error_with_install() -> None:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from spoolup.integrations.starlette import install

    class Peek:
        """A middleware that reads the first body message itself (as a logger might)."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                await receive()
            await self.app(scope, receive, send)

    peeked = Starlette(routes=[Route("/form", form_view, methods=["POST"])])
    peeked.add_middleware(Peek)
    install(peeked)  # after the app's middleware: it sees what they read
    transport = httpx.ASGITransport(app=peeked, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        with pytest.raises(RuntimeError, match="already read by something before spoolup"):
            await http.post("/form", content=body(), headers={"content-type": CONTENT_TYPE})
