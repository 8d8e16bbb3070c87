"""The tus app under attack: uploads a client can never resume are not left behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from spoolup.tus import create_tus_app
from spoolup.tus.state import UploadInfo
from spoolup.tus.store import TusStore
from tests.tus.conftest import Env, Server
from tests.tus.test_app import OCT, create, patch


def _leftovers(env: Env) -> list[str]:
    deadline = time.monotonic() + 30
    while (ids := sorted(env.store.ids())) and time.monotonic() < deadline:
        time.sleep(0.02)  # the failed request may still be unwinding
    return ids


def test_creation_body_too_large_leaves_nothing(
    env: Env, server: Server, client: httpx.Client
) -> None:
    def body() -> Iterator[bytes]:  # chunked: the size is only known as it arrives
        yield b"x" * 6
        yield b"y" * 6

    r = client.post(server.url, content=body(), headers={**OCT, "Upload-Length": "10"})
    assert r.status_code == 413
    assert "location" not in r.headers
    assert _leftovers(env) == []


def test_creation_body_cut_short_leaves_nothing(env: Env, server: Server) -> None:
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /tus/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            b"Content-Type: application/offset+octet-stream\r\n"
            b"Upload-Length: 5000\r\nContent-Length: 5000\r\n\r\n" + b"z" * 1000
        )
        deadline = time.monotonic() + 30
        while not list(env.store.ids()):  # the upload exists while its body arrives
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert _leftovers(env) == []
    deadline = time.monotonic() + 30
    while env.storage.list().items and time.monotonic() < deadline:
        time.sleep(0.02)  # the lease goes last
    assert env.storage.list().items == []
    assert list((env.root / ".uploads").iterdir()) == []


class _VanishingPartStore(TusStore):
    """A part deleted by another request while the final upload is being assembled."""

    def concat(self, final: UploadInfo, parts: list[UploadInfo], **kw: Any) -> str:
        self.delete(parts[0].id)
        return super().concat(final, parts, **kw)


def test_failed_concatenation_leaves_no_final_upload(tmp_path: Path, client: httpx.Client) -> None:
    env = Env(tmp_path / "store")
    env.store = _VanishingPartStore(env.storage)
    try:
        server = Server(create_tus_app(env.store, on_complete=env.completed, sweep_interval=None))
        env.servers.append(server)
        a = create(client, server, 2, **{"Upload-Concat": "partial"})
        b = create(client, server, 2, **{"Upload-Concat": "partial"})
        assert patch(client, a, 0, b"ab").status_code == 204
        assert patch(client, b, 0, b"cd").status_code == 204
        r = client.post(server.url, headers={"Upload-Concat": f"final;{a} {b}"})
        assert r.status_code == 410
        assert r.json() == {"error": "a partial upload was removed during the concatenation"}
        assert sorted(env.store.ids()) == [b.rsplit("/", 1)[1]]
        assert env.completed.calls == []
    finally:
        env.close()


@pytest.mark.parametrize("value", ["9" * 21, "-1", "1e3", "0x10", "\u0661"])
def test_client_numbers_are_bounded(
    env: Env, server: Server, client: httpx.Client, value: str
) -> None:
    raw = value.encode()
    r = client.post(server.url, headers={b"Upload-Length": raw})
    assert r.status_code == 400
    assert len(r.content) < 200
    url = create(client, server, 3)
    oct_type = OCT["Content-Type"].encode()
    r = client.patch(url, content=b"a", headers={b"Content-Type": oct_type, b"Upload-Offset": raw})
    assert r.status_code == 400
