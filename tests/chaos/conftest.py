"""Helpers for the chaos suite: bodies sent slowly from a thread, so a test can strike mid-way."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


def payload(size: int, seed: int = 1) -> bytes:
    """``size`` bytes that differ between seeds (cheap to make, not compressible by chance)."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return (block * (size // len(block) + 1))[:size]


@dataclass
class SlowSend:
    """One request whose body goes out in ``chunk`` pieces, ``pause`` seconds apart."""

    method: str
    url: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    chunk: int = 256 * 1024
    pause: float = 0.02
    sent: int = 0
    response: httpx.Response | None = None
    error: Exception | None = None
    thread: threading.Thread | None = None

    def _body(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            piece = self.data[start : start + self.chunk]
            yield piece
            self.sent += len(piece)
            time.sleep(self.pause)

    def _run(self) -> None:
        headers = {"Content-Length": str(len(self.data)), **self.headers}
        try:
            self.response = httpx.request(
                self.method, self.url, content=self._body(), headers=headers, timeout=60
            )
        except Exception as exc:
            self.error = exc

    def start(self) -> SlowSend:
        """Start sending in a thread."""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def wait_sent(self, count: int, timeout: float = 60) -> None:
        """Block until at least ``count`` body bytes went out."""
        deadline = time.monotonic() + timeout
        while self.sent < count:
            assert time.monotonic() < deadline, f"only {self.sent} bytes sent"
            assert self.thread is not None
            assert self.thread.is_alive(), (self.response, self.error)
            time.sleep(0.01)

    def join(self, timeout: float = 60) -> None:
        """Wait for the request to end (answered or failed)."""
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request never ended"


def leftovers(storage: Path) -> list[str]:
    """Files under ``storage`` that are temp names (nothing a record or an upload owns)."""
    return sorted(
        str(p.relative_to(storage)) for p in storage.rglob("*spoolup-tmp*") if p.is_file()
    )
