"""A real uvicorn server on 127.0.0.1 serving the tus app at /tus/, started per test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from spoolup.files import UploadedFile
from spoolup.storage.local import LocalStorage
from spoolup.storage.resumable import PartAppender
from spoolup.tus import TusApp, UploadInfo, create_tus_app
from spoolup.tus.store import TusStore

if TYPE_CHECKING:
    from starlette.types import ASGIApp


class CountingStorage(LocalStorage):
    """A LocalStorage counting the tus bytes appended (``part_bytes``), each write
    delayed by ``delay`` seconds: time to interrupt an upload."""

    def __init__(self, root: Path, delay: float = 0.0) -> None:
        super().__init__(root)
        self.part_bytes = 0
        self.delay = delay
        self.lock = threading.Lock()

    def open_append(self, key: str, upload_id: str, offset: int) -> PartAppender:
        """The real appender, counted (and slowed down)."""
        return _CountingAppender(super().open_append(key, upload_id, offset), self)


class _CountingAppender(PartAppender):
    def __init__(self, inner: PartAppender, storage: CountingStorage) -> None:
        self.inner = inner
        self.storage = storage
        self.size = inner.size

    def write(self, data: bytes) -> None:
        if self.storage.delay:
            time.sleep(self.storage.delay)
        self.inner.write(data)
        self.size = self.inner.size
        with self.storage.lock:
            self.storage.part_bytes += len(data)

    def sync(self) -> None:
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()


class Clock:
    """A settable clock, so expiry is tested without waiting."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Completed:
    """Records what on_complete received."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, file: UploadedFile, info: UploadInfo) -> dict[str, Any]:
        data = file.read()
        record = {
            "id": info.id,
            "filename": file.filename,
            "content_type": file.content_type,
            "size": file.size,
            "sha256": file.hashes.get("sha256"),
            "path": file.path,
        }
        self.calls.append({**record, "data": data})
        return {k: v for k, v in record.items() if k != "path"}


class Server:
    """uvicorn in a thread; ``url`` is the tus collection URL."""

    def __init__(self, app: TusApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        asgi = Starlette(routes=[*routes, Mount("/tus", app=cast("ASGIApp", app))])
        config = uvicorn.Config(
            asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/tus/"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()


class Env:
    """A store over a LocalStorage, a clock, a completion recorder, servers on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.storage = LocalStorage(root)
        self.store = TusStore(self.storage)
        self.clock = Clock()
        self.completed = Completed()
        self.servers: list[Server] = []

    def start(self, routes: Sequence[BaseRoute] = (), **options: Any) -> Server:
        options.setdefault("max_size", 1 << 30)
        options.setdefault("expiry", 3600.0)
        options.setdefault("on_complete", self.completed)
        options.setdefault("clock", self.clock)
        options.setdefault("sweep_interval", None)
        server = Server(create_tus_app(self.store, **options), routes)
        self.servers.append(server)
        return server

    def has_data(self, upload_id: str) -> bool:
        return self.storage.exists(self.store.key(upload_id, "data"))

    def lease_owner(self, upload_id: str) -> str | None:
        try:
            record = (self.root / ".tus-leases" / f"{upload_id}.lock").read_bytes()
        except FileNotFoundError:
            return None
        return str(json.loads(record)["owner"])

    def close(self) -> None:
        for server in self.servers:
            if server.thread.is_alive():
                server.stop()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path / "store")
    yield e
    e.close()


@pytest.fixture
def server(env: Env) -> Server:
    return env.start()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Tus-Resumable": "1.0.0"}, timeout=10) as c:
        yield c
