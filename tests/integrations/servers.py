"""Real servers for the framework tests: uvicorn or gunicorn in a child process on 127.0.0.1.

Each server gets its own ``TMPDIR`` (so a test sees every temp file it makes) and a
storage folder (``$SPOOLUP_TEST_STORAGE``), and is stopped by its PID.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.serving import (
    free_port,
    process_tree,
    stop,
    uvicorn_command,
    wait_for_port,
    write_bytes,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A running server: its URL, process, temp folder and storage folder."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    tmpdir: Path
    storage: Path

    def written(self) -> int:
        """Bytes the server's processes have written to storage so far."""
        return write_bytes(process_tree(self.process.pid))

    def temp_files(self) -> list[str]:
        """The names in the server's TMPDIR."""
        return sorted(p.name for p in self.tmpdir.iterdir())

    def wait_for_no_temp_files(self, deadline: float = 30) -> list[str]:
        """Wait (up to a generous deadline) until TMPDIR is empty; what is left."""
        end = time.monotonic() + deadline
        while self.temp_files() and time.monotonic() < end:
            time.sleep(0.05)
        return self.temp_files()


@contextmanager
def serve(kind: str, app: str, folder: Path) -> Iterator[Server]:
    """Serve ``app`` (``module:factory``) with uvicorn (ASGI) or gunicorn (WSGI)."""
    tmpdir, storage = folder / "tmp", folder / "storage"
    tmpdir.mkdir()
    storage.mkdir()
    port = free_port()
    if kind == "gunicorn":
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            f"{app}()",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--log-level",
            "warning",
        ]
    else:
        command = uvicorn_command(app, port)
    env = {**os.environ, "TMPDIR": str(tmpdir), "SPOOLUP_TEST_STORAGE": str(storage)}
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_for_port(port, process)
        # One request first: a pre-fork worker exists and has loaded the app.
        httpx.get(f"http://127.0.0.1:{port}/", timeout=60)
        yield Server(f"http://127.0.0.1:{port}", port, process, tmpdir, storage)
    finally:
        stop(process)


def multipart(boundary: str, *parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart body of ``(name, filename or None, data)`` parts."""
    out = io.BytesIO()
    for name, filename, data in parts:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode())
        if filename is not None:
            out.write(f'; filename="{filename}"\r\nContent-Type: application/octet-stream'.encode())
        out.write(b"\r\n\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def leave_mid_upload(server: Server, path: str, sent: int = 4 * 1024 * 1024) -> list[str]:
    """Start a large multipart upload, send ``sent`` bytes of it, wait until the server
    spools it to a temp file, then vanish; the temp files seen before leaving."""
    boundary = "leavingBoundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    declared = len(head) + 64 * 1024 * 1024
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request + head + os.urandom(sent))
        end = time.monotonic() + 30
        while not server.temp_files() and time.monotonic() < end:
            time.sleep(0.02)
        return server.temp_files()


def declare_only(server: Server, path: str, length: int) -> bytes:
    """Send only the headers of a multipart POST declaring ``length`` bytes; the answer's
    first bytes (a server that waits for the body would time out here)."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        return sock.recv(65536)


def check_backup(server: Server, size: int = 64 * 1024 * 1024) -> None:
    """POST a random backup to ``/backups``: kept whole with its sha256, no temp file left."""
    data = os.urandom(size)
    with httpx.Client(base_url=server.url, timeout=120) as http:
        response = http.post("/backups", files={"backup": ("site.tar", data)})
    assert response.status_code == 200
    digest = hashlib.sha256(data).hexdigest()
    assert response.json() == {"name": "site.tar", "size": len(data), "sha256": digest}
    kept = server.storage / "site.tar"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest
    kept.unlink()
    assert server.wait_for_no_temp_files() == []


def check_image_in_memory(server: Server, image: bytes) -> None:
    """POST ``image`` to ``/avatar``: read in memory, never written (the server writes
    less than 64 KiB meanwhile); one byte over 2 MB is a 413."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        before = server.written()
        response = http.post("/avatar", files={"image": ("me.png", image, "image/png")})
        written = server.written() - before
        assert response.json()["in_memory"] is True
        assert written < 64 * 1024
        big = image + b"\0" * (2_000_001 - len(image))
        response = http.post("/avatar", files={"image": ("big.png", big, "image/png")})
        assert response.status_code == 413
    assert server.temp_files() == []


def check_client_leaving(server: Server) -> None:
    """A client leaving mid-upload of ``/backups`` leaves no temp file and nothing kept."""
    seen = leave_mid_upload(server, "/backups")
    assert seen, "the server never spooled the upload to a temp file"
    assert server.wait_for_no_temp_files() == []
    assert list(server.storage.iterdir()) == []


def png(width: int = 800, height: int = 800) -> bytes:
    """A PNG of noise (about ``3 * width * height`` bytes: noise does not compress)."""
    from PIL import Image

    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()
