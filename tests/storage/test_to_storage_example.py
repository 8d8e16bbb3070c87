"""examples/to_storage.py: files stream into a folder or S3 and come back as JSON records."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from spoolup.storage import LocalStorage, Storage
from tests.seaweed import Seaweed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "to_storage.py"
BOUNDARY = "exampleBoundary"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_to_storage", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def form_body(*files: tuple[str, str, bytes]) -> bytes:
    out = b""
    for field, filename, data in files:
        out += (
            (
                f"--{BOUNDARY}\r\n"
                f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


async def call(app: Any, body: bytes, method: str = "POST") -> tuple[int, Any]:
    """Run one request through the ASGI app, the body in 64 KiB messages."""
    messages = [
        {"type": "http.request", "body": body[i : i + 65536], "more_body": i + 65536 < len(body)}
        for i in range(0, max(len(body), 1), 65536)
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": "/",
        "headers": [
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def check_example(storage: Storage) -> None:
    example = load()
    app = example.make_app(storage, max_file_size=1_000_000)
    big = bytes(range(256)) * 3000
    status, records = await call(app, form_body(("file", "a.bin", big), ("file", "b.txt", b"hi")))
    assert status == 201
    assert [(r["filename"], r["size"]) for r in records] == [("a.bin", len(big)), ("b.txt", 2)]
    assert records[0]["sha256"] == hashlib.sha256(big).hexdigest()
    assert storage.read_bytes(records[0]["key"]) == big
    status, error = await call(app, form_body(("file", "huge.bin", b"x" * 1_000_001)))
    assert status == 413
    assert "max_size" in error["error"]
    assert sorted(i.key for i in storage.list().items) == sorted(r["key"] for r in records)
    status, _ = await call(app, b"", method="GET")
    assert status == 404


async def test_example_into_a_folder(tmp_path: Path) -> None:
    await check_example(LocalStorage(tmp_path))


@pytest.mark.s3
async def test_example_into_s3(s3_storage: Storage) -> None:
    await check_example(s3_storage)


async def test_default_app_uses_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE", str(tmp_path / "env-storage"))
    example = load()
    status, records = await call(example.app, form_body(("f", "x.txt", b"x")))
    assert status == 201
    assert LocalStorage(tmp_path / "env-storage").read_bytes(records[0]["key"]) == b"x"


def test_open_storage_for_s3(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    storage = load().open_storage(f"s3://{seaweed.bucket}/example")
    assert (storage.bucket, storage.prefix) == (seaweed.bucket, "example/")
