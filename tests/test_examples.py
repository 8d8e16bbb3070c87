"""The examples run: the in-memory image check and the streamed, renamed backup."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

import spoolup._cleanup

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BOUNDARY = "exampleBoundary"
CT = f"multipart/form-data; boundary={BOUNDARY}".encode()


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


white_image = load("white_image")
backup = load("backup")


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def file_part(field: str, filename: str, data: bytes, ctype: str | None = None) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
    )
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def image(fmt: str, color: str = "white", size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


class Call:
    """Drive an ASGI app once: chunked receive() that counts, send() that records."""

    def __init__(
        self, body: bytes, *, with_length: bool = True, method: str = "POST", path: str = "/"
    ) -> None:
        headers = [(b"content-type", CT)]
        if with_length:
            headers.append((b"content-length", str(len(body)).encode()))
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": headers,
        }
        self.chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
        self.received = 0
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        i = self.received
        self.received += 1
        return {
            "type": "http.request",
            "body": self.chunks[i],
            "more_body": i < len(self.chunks) - 1,
        }

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    async def run(self, app: Any) -> tuple[int, dict[str, Any]]:
        await app(self.scope, self.receive, self.send)
        import json

        return self.sent[0]["status"], json.loads(self.sent[1]["body"])


@pytest.fixture
def no_disk(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Record every temp file spoolup would create; the test checks there is none."""
    created: list[object] = []
    real = spoolup._cleanup.SpoolFile.__init__

    def spy(self: spoolup._cleanup.SpoolFile, **kwargs: Any) -> None:
        created.append(self)
        real(self, **kwargs)

    monkeypatch.setattr(spoolup._cleanup.SpoolFile, "__init__", spy)
    yield created
    assert created == []
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("fmt", "color", "white"),
    [
        ("PNG", "white", True),
        ("JPEG", "white", True),
        ("PNG", "red", False),
        ("GIF", "black", False),
    ],
)
async def test_white_image(no_disk: list[object], fmt: str, color: str, white: bool) -> None:
    call = Call(file_part("image", f"a.{fmt.lower()}", image(fmt, color), f"image/{fmt.lower()}"))
    status, payload = await call.run(white_image.app)
    assert status == 200
    assert payload == {"width": 64, "height": 48, "format": fmt, "all_white": white}


async def test_white_image_large_image_in_memory(no_disk: list[object]) -> None:
    # Over the 1 MiB default memory threshold, still never on disk.
    data = image("BMP", "white", (700, 600))
    assert 1024 * 1024 < len(data) < 2 * 1024 * 1024
    status, payload = await Call(file_part("image", "a.bmp", data)).run(white_image.app)
    assert (status, payload["all_white"]) == (200, True)


async def test_white_image_over_2mb_with_length_is_refused_before_reading(
    no_disk: list[object],
) -> None:
    call = Call(file_part("image", "a.png", image("PNG") + b"\0" * 3 * 1024 * 1024))
    status, payload = await call.run(white_image.app)
    assert status == 413
    assert "max_body_size" in payload["error"]
    assert call.received == 0


async def test_white_image_over_2mb_chunked_stops_at_the_limit(no_disk: list[object]) -> None:
    call = Call(
        file_part("image", "a.png", image("PNG") + b"\0" * 8 * 1024 * 1024), with_length=False
    )
    status, payload = await call.run(white_image.app)
    assert status == 413
    assert "max_file_size" in payload["error"]
    # Read up to the limit, plus at most the batch in the worker and the one being
    # received (a quarter of the limit each): never the rest.
    assert call.received * 65536 <= 3.5 * 1024 * 1024
    assert call.received < len(call.chunks) // 2


@pytest.mark.parametrize(
    ("data", "ctype"),
    [
        (b"hello, this is text" * 100, "text/plain"),
        (b"hello, this is text" * 100, "image/png"),
        (b"%PDF-1.4\n" + b"x" * 1000, None),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 100, "image/png"),
    ],
)
async def test_white_image_non_image_is_415(
    no_disk: list[object], data: bytes, ctype: str | None
) -> None:
    status, payload = await Call(file_part("image", "a.png", data, ctype)).run(white_image.app)
    assert status == 415
    assert payload["error"]


async def test_white_image_bad_requests(no_disk: list[object]) -> None:
    status, _ = await Call(file_part("other", "a.png", image("PNG"))).run(white_image.app)
    assert status == 400
    status, _ = await Call(b"", method="GET").run(white_image.app)
    assert status == 405
    status, _ = await Call(b"", path="/x").run(white_image.app)
    assert status == 404
    await white_image.app({"type": "lifespan"}, None, None)


def test_inspect_image_refuses_too_many_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(white_image, "MAX_PIXELS", 100)
    with pytest.raises(white_image.UploadError) as err:
        white_image.inspect_image(image("PNG", size=(20, 20)))
    assert err.value.status == 413


class Server:
    """uvicorn serving an app on 127.0.0.1 in a thread, on a free port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", ws="none", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def test_backup_streams_to_disk_and_saves_by_rename(
    tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "backups"
    renames: list[tuple[Path, Path, int]] = []
    real_replace = Path.replace

    def spy(self: Path, target: str | os.PathLike[str]) -> Path:
        renames.append((self, Path(target), self.stat().st_ino))
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", spy)
    block = random.Random(3).randbytes(1024 * 1024)
    count = 50
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="backup"; filename="site.tar"\r\n'
        "Content-Type: application/x-tar\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def content() -> Iterator[bytes]:
        yield head
        for _ in range(count):
            yield block
        yield tail

    expected = hashlib.sha256(block * count).hexdigest()
    length = len(head) + count * len(block) + len(tail)
    with Server(backup.make_app(folder)) as url:
        response = httpx.post(
            url,
            content=content(),
            headers={"content-type": CT.decode(), "content-length": str(length)},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        assert response.json() == {
            "filename": "site.tar",
            "size": count * len(block),
            "sha256": expected,
        }
        missing = httpx.post(
            url, content=file_part("other", "x", b"x"), headers={"content-type": CT.decode()}
        )
        assert missing.status_code == 400
        bad = httpx.post(url, content=b"--nope", headers={"content-type": CT.decode()})
        assert bad.status_code == 400
        assert httpx.get(url).status_code == 404
    saved = folder / "site.tar"
    digest = hashlib.sha256()
    with saved.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == expected
    assert len(renames) == 1
    source, target, inode = renames[0]
    assert source.parent == tmp  # the temp file spoolup wrote while receiving
    assert target == saved
    assert saved.stat().st_ino == inode  # moved, not copied
    assert list(tmp.iterdir()) == []
