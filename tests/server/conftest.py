"""A real spoolup server on 127.0.0.1 for the API tests: uvicorn in a thread, a private TMPDIR."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from benchmarks.serving import free_port
from spoolup.server.config import ServerConfig
from spoolup.server.protocol import connection_limits, guarded_protocol


@dataclass
class RunningServer:
    url: str
    config: ServerConfig
    storage: Path
    tmpdir: Path
    server: uvicorn.Server
    thread: threading.Thread

    def client(
        self, token: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Client:
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def temp_files(self) -> list[str]:
        return sorted(p.name for p in self.tmpdir.iterdir())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(config: ServerConfig, tmpdir: Path, **app_options: Any) -> RunningServer:
    from spoolup.server.app import create_app

    port = free_port()
    config = dataclasses.replace(config, host="127.0.0.1", port=port)
    app = create_app(config, **app_options)
    uv_config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=guarded_protocol(connection_limits(config)),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(uv_config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            msg = "the test server did not start"
            raise RuntimeError(msg)
        time.sleep(0.01)
    return RunningServer(
        url=f"http://127.0.0.1:{port}",
        config=config,
        storage=Path(config.storage),
        tmpdir=tmpdir,
        server=server,
        thread=thread,
    )


def wait_for_log(caplog: pytest.LogCaptureFixture, logger: str, needle: str) -> str:
    """The first message of ``logger`` holding ``needle``, waited for: the server logs
    after it answered, so the client may see the answer before the line exists."""
    deadline = time.monotonic() + 30
    while True:
        for record in list(caplog.records):
            if record.name == logger and needle in (message := record.getMessage()):
                return message
        assert time.monotonic() < deadline, f"no {logger} line with {needle!r}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def private_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every temp file of the server process lands here, so the tests can count them."""
    path = tmp_path_factory.mktemp("server-tmp")
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(path)
    os.environ["TMPDIR"] = str(path)
    yield path
    tempfile.tempdir = saved_tempdir
    if saved_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved_env


@pytest.fixture(scope="module")
def make_server(
    tmp_path_factory: pytest.TempPathFactory, private_tmpdir: Path
) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with the given settings; they are stopped at the end of the module."""
    servers: list[RunningServer] = []

    def make(app_options: dict[str, Any] | None = None, **settings: Any) -> RunningServer:
        settings.setdefault("storage", str(tmp_path_factory.mktemp("storage")))
        running = start_server(ServerConfig(**settings), private_tmpdir, **(app_options or {}))
        servers.append(running)
        return running

    yield make
    for running in servers:
        running.stop()


@pytest.fixture(scope="module")
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    """One open server (no token) for a whole test module."""
    return make_server()


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(autouse=True)
def _no_temp_file_left(private_tmpdir: Path) -> Iterator[None]:
    """After every test, the server's private TMPDIR holds nothing."""
    yield
    deadline = time.monotonic() + 30
    while (
        left := sorted(p.name for p in private_tmpdir.iterdir())
    ) and time.monotonic() < deadline:
        time.sleep(0.05)  # a request the client gave up on may still be unwinding
    assert left == [], f"temp files left behind: {left}"
