"""The README's examples run as written (only the folders they write to are moved).

The library snippets, then each framework's app; Django's is in
``tests/integrations/django/test_readme_example.py`` (it needs the Django project).
"""

from __future__ import annotations

import hashlib
import io
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import spoolup
from tests.integrations.helpers import readme_code
from tests.integrations.servers import multipart, png

PNG = png(40, 30)
BOUNDARY = "readmeBoundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def run_snippet(code: str, **names: Any) -> dict[str, Any]:
    """Run a README snippet with ``names`` defined (the ``body`` it reads, say)."""
    namespace: dict[str, Any] = {"__name__": "readme_snippet", **names}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_first_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = multipart(
        BOUNDARY,
        ("title", None, b"Holiday"),
        ("tag", None, b"sea"),
        ("tag", None, b"sun"),
        ("upload", "beach.jpg", b"jpeg bytes"),
    )
    code = readme_code("## A first example")[0].replace("/srv/uploads/", f"{tmp_path}/")
    ran = run_snippet(code, body=body, content_type=CONTENT_TYPE)
    assert (ran["title"], ran["tags"]) == ("Holiday", ["sea", "sun"])
    assert capsys.readouterr().out == "beach.jpg 10 True\n"
    assert (tmp_path / "beach.jpg").read_bytes() == b"jpeg bytes"


async def test_asgi_snippet() -> None:
    app = run_snippet(readme_code("## A first example")[1])["app"]
    for body in (multipart(BOUNDARY, ("title", None, b"x")), b"--readmeBoundary\r\nbroken"):
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        scope = {
            "type": "http",
            "method": "POST",
            "headers": [(b"content-type", CONTENT_TYPE.encode())],
        }

        async def receive(messages: list[dict[str, Any]] = messages) -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            raise AssertionError(message)  # the snippet answers nothing itself

        await app(scope, receive, send)  # a bad body is an UploadError it catches


def test_handlers_snippet(tmp_path: Path) -> None:
    data = b"backup bytes" * 1000
    body = multipart(BOUNDARY, ("backup", "site.tar", data))
    code = readme_code("## Handlers: where the bytes go")[0].replace("/srv/uploads", str(tmp_path))
    stored = run_snippet(code, spoolup=spoolup, body=body, content_type=CONTENT_TYPE)["stored"]
    assert stored.hashes["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored.hashes["md5"] == hashlib.md5(data).hexdigest()
    assert (tmp_path / stored.key).read_bytes() == data


def example(framework: str, folder: Path) -> Any:
    """Run the first Python block under ``### <framework>`` as a module ``app.py``."""
    code = readme_code(f"### {framework}")[0].replace("/srv/backups", str(folder))
    module = types.ModuleType(f"readme_{framework.lower()}")
    sys.modules[module.__name__] = module  # Litestar reads annotations from sys.modules
    exec(compile(code, f"README.md ({framework})", "exec"), module.__dict__)
    return module.app


def test_fastapi_example(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    with TestClient(example("FastAPI", tmp_path)) as http:
        response = http.post("/avatar", files={"image": ("a.png", PNG, "image/png")})
        assert response.json() == {"size": len(PNG)}
        response = http.post("/avatar", files={"image": ("a.png", b"not an image")})
        assert response.status_code == 415
        response = http.post("/backups", files={"backup": ("b.tar", b"backup")})
        assert response.json() == {"sha256": hashlib.sha256(b"backup").hexdigest()}
        assert (tmp_path / "b.tar").read_bytes() == b"backup"
        assert http.put("/files/notes.txt", content=b"hello").json() == {"size": 5}
        docs = http.get("/openapi.json").json()["paths"]["/avatar"]["post"]
        assert (
            "image" in docs["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
        )


def test_starlette_example(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    with TestClient(example("Starlette", tmp_path)) as http:
        response = http.post("/upload", files={"file": ("a.txt", b"abc")})
        assert response.json() == {"size": 3}
        response = http.post("/upload", files={"file": ("a.txt", b"x" * 2_000_001)})
        assert response.status_code == 413
        assert "max_file_size" in response.json()["error"]


def test_flask_example(tmp_path: Path) -> None:
    app = example("Flask", tmp_path)
    http = app.test_client()
    response = http.post("/avatar", data={"image": (io.BytesIO(PNG), "a.png", "image/png")})
    assert response.get_json() == {"size": len(PNG), "type": "image/png"}
    response = http.post("/backups", data={"backup": (io.BytesIO(b"backup"), "b.tar")})
    assert response.get_json() == {"sha256": hashlib.sha256(b"backup").hexdigest()}
    assert (tmp_path / "b.tar").read_bytes() == b"backup"


def test_litestar_example(tmp_path: Path) -> None:
    from litestar.testing import TestClient

    with TestClient(example("Litestar", tmp_path)) as http:
        response = http.post("/avatar", files={"image": ("a.png", PNG, "image/png")})
        assert response.json() == {"size": len(PNG)}
        response = http.post("/avatar", files={"image": ("a.png", b"x" * 2_000_001)})
        assert response.status_code == 413
        response = http.post("/backups", files={"backup": ("b.tar", b"backup")})
        assert response.json() == {"sha256": hashlib.sha256(b"backup").hexdigest()}
