"""The project over real servers on 127.0.0.1: gunicorn (WSGI) and uvicorn (spoolup's ASGI).

What a user sees: the picture checked in memory (nothing written), a large backup
stored with its sha256 and written once, a ModelForm upload, an early 413 before the
body is sent, and a client that leaves midway leaving nothing behind. Disk writes are
read from ``/proc/<pid>/io`` of the process that runs the views.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integrations.django.conftest import (
    _BASE,
    MEDIA,
    TEMP,
    Server,
    files_under,
    start_server,
)
from tests.integrations.django.helpers import bmp

MiB = 1024 * 1024
BACKUP_SIZE = 64 * MiB

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    running = start_server(request.param)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def backup_file() -> Iterator[tuple[Path, str]]:
    path = _BASE / "backup.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(BACKUP_SIZE // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            out.write(block)
    yield path, digest.hexdigest()
    path.unlink()


def written(pid: int) -> int:
    """Bytes the process has passed to write(2) so far."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/<pid>/io")


class Browser:
    """A client holding the CSRF cookie and token, like a browser with the page open."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=120)
        self.token = self.client.get("/csrf/").text

    def close(self) -> None:
        self.client.close()

    def upload(
        self, path: str, field: str, name: str, source: Path | bytes, fields: dict[str, str]
    ) -> httpx.Response:
        boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = len(source) if isinstance(source, bytes) else source.stat().st_size

        def body() -> Iterator[bytes]:
            yield head
            if isinstance(source, bytes):
                yield source
            else:
                with source.open("rb") as f:
                    while block := f.read(MiB):
                        yield block
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
            "X-CSRFToken": self.token,
            "Accept": "application/json",
        }
        return self.client.post(path, content=body(), headers=headers)


@pytest.fixture
def browser(server: Server) -> Iterator[Browser]:
    b = Browser(server)
    yield b
    b.close()


def test_image_is_checked_in_memory_and_never_written(server: Server, browser: Browser) -> None:
    picture = bmp(830, 840)
    pid = server.worker_pid
    before = written(pid)
    response = browser.upload("/image/", "image", "scan.bmp", picture, {})
    after = written(pid)
    assert response.status_code == 200, response.text
    assert response.json()["all_white"] is True
    assert response.json()["in_memory"] is True
    assert after - before < len(picture) // 8  # the response and a log line, not the file
    assert files_under(TEMP) == []
    assert files_under(MEDIA) == []


def test_oversized_image_is_refused_before_its_body_is_sent(server: Server) -> None:
    browser = Browser(server)
    try:
        cookie = browser.client.cookies["csrftoken"]
    finally:
        browser.close()
    declared = 200 * MiB
    head = (
        f"POST /image/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {declared}\r\n"
        f"Cookie: csrftoken={cookie}\r\nX-CSRFToken: {browser.token}\r\n"
        "Accept: application/json\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head.encode())  # and not one byte of the body
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413", answer
    assert b"max_body_size" in rest


@pytest.mark.parametrize("view", ["/backup/", "/async-backup/"])
def test_backup_is_stored_with_its_sha256_and_written_once(
    server: Server, browser: Browser, backup_file: tuple[Path, str], view: str
) -> None:
    path, digest = backup_file
    pid = server.worker_pid
    before = written(pid)
    response = browser.upload(view, "backup", "backup.tar", path, {})
    after = written(pid)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["size"] == BACKUP_SIZE
    assert answer["sha256"] == digest
    stored = MEDIA / answer["name"]
    assert answer["name"].startswith("backups/")
    with stored.open("rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == digest
    ratio = (after - before) / BACKUP_SIZE
    assert 0.99 < ratio < 1.05, f"{ratio:.3f} bytes written per byte received"
    assert files_under(TEMP) == []


def test_modelform_upload_is_saved_by_rename(server: Server, browser: Browser) -> None:
    data = os.urandom(8 * MiB)
    pid = server.worker_pid
    before = written(pid)
    response = browser.upload("/docs/new/", "file", "report.pdf", data, {"title": "report"})
    after = written(pid)
    assert response.status_code == 302, response.text
    doc = browser.client.get(response.headers["Location"]).json()
    assert Path(doc["path"]).read_bytes() == data
    assert doc["name"] == "docs/report.pdf"
    ratio = (after - before) / len(data)
    assert ratio < 1.05, f"{ratio:.3f}: the temp file was copied, not moved"
    assert files_under(TEMP) == []


def test_client_leaving_midway_leaves_nothing(server: Server) -> None:
    browser = Browser(server)
    cookie = browser.client.cookies["csrftoken"]
    head = (
        f"POST /backup/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {64 * MiB}\r\n"
        f"Cookie: csrftoken={cookie}\r\nX-CSRFToken: {browser.token}\r\n\r\n"
        '--xyz\r\nContent-Disposition: form-data; name="backup"; filename="b.bin"\r\n\r\n'
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head.encode())
        block = os.urandom(MiB)
        for _ in range(6):
            sock.sendall(block)
        deadline = time.monotonic() + 60
        while not [p for p in files_under(MEDIA) if p.name.endswith(".spoolup-tmp")]:
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.05)
    deadline = time.monotonic() + 60
    while files_under(MEDIA) or files_under(TEMP):
        assert time.monotonic() < deadline, files_under(MEDIA) + files_under(TEMP)
        time.sleep(0.1)
    assert browser.client.get("/csrf/").status_code == 200  # still serving
    browser.close()


def test_async_view_reads_a_json_body(server: Server, browser: Browser) -> None:
    payload = json.dumps({"x": "y" * 1000}).encode()
    response = browser.client.post(
        "/async-body/",
        content=payload,
        headers={"Content-Type": "application/json", "X-CSRFToken": browser.token},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"length": len(payload)}
