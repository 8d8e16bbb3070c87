"""The README's framework examples run as written (only the backup folder is moved)."""

from __future__ import annotations

import hashlib
import io
import re
import sys
import types
from pathlib import Path
from typing import Any

from tests.integrations.servers import png

README = Path(__file__).resolve().parents[2] / "README.md"
PNG = png(40, 30)


def example(framework: str, folder: Path) -> Any:
    """Run the first Python block under ``### <framework>`` as a module ``app.py``."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## FastAPI, Starlette, Flask and Litestar", 1)[1]
    section = section.split(f"\n### {framework}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    code = match.group(1).replace("/srv/backups", str(folder))
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
