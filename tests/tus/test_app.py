"""The tus app over real sockets: uvicorn on 127.0.0.1, httpx and raw sockets as clients."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from spoolup.errors import UnsupportedMediaType
from spoolup.handlers import HashingHandler, SizeLimitHandler
from spoolup.storage.local import LocalStorage
from spoolup.tus.app import tus_store_for
from spoolup.tus.lock import lock_for
from tests.tus.conftest import Env, Server

OCT = {"Content-Type": "application/offset+octet-stream"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create(client: httpx.Client, server: Server, length: int | None, **headers: str) -> str:
    h = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    h.update(headers)
    r = client.post(server.url, headers=h)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith("/tus/")
    return server.base + location


def patch(
    client: httpx.Client, url: str, offset: int, data: bytes, **headers: str
) -> httpx.Response:
    return client.patch(url, content=data, headers={**OCT, "Upload-Offset": str(offset), **headers})


def test_options_and_cors(env: Env, server: Server, client: httpx.Client) -> None:
    r = httpx.options(server.url)
    assert r.status_code == 204
    assert r.headers["tus-version"] == "1.0.0"
    assert r.headers["tus-max-size"] == str(1 << 30)
    preflight = {"Origin": "http://page", "Access-Control-Request-Method": "PATCH"}
    # A library app gives no page CORS unless its origin is configured.
    r = httpx.options(server.url + "x", headers=preflight)
    assert not any(name.startswith("access-control-") for name in r.headers)
    r = client.post(server.url, headers={"Upload-Length": "1", "Origin": "http://page"})
    assert r.status_code == 201
    assert "access-control-allow-origin" not in r.headers
    server = env.start(allow_origins=("http://page",))
    r = httpx.options(server.url + "x", headers=preflight)
    assert r.headers["access-control-allow-origin"] == "http://page"
    assert (
        "access-control-allow-origin"
        not in httpx.options(
            server.url + "x", headers={**preflight, "Origin": "http://other"}
        ).headers
    )
    assert "Upload-Offset" in r.headers["access-control-allow-headers"]
    r = client.post(server.url, headers={"Upload-Length": "1", "Origin": "http://page"})
    assert "Location" in r.headers["access-control-expose-headers"]


def test_full_upload_in_chunks(env: Env, server: Server, client: httpx.Client) -> None:
    data = bytes(range(256)) * 1000
    name = b64("../evil/r\u00e9sum\u00e9.bin")
    meta = f"filename {name},filetype {b64('Application/X-Test')}"
    url = create(client, server, len(data), **{"Upload-Metadata": meta})
    r = client.head(url)
    assert r.status_code == 200
    assert r.headers["upload-offset"] == "0"
    assert r.headers["upload-length"] == str(len(data))
    assert r.headers["upload-metadata"] == meta
    assert r.headers["cache-control"] == "no-store"
    assert "upload-expires" in r.headers
    offset = 0
    for start in range(0, len(data), 100_000):
        r = patch(client, url, offset, data[start : start + 100_000])
        assert r.status_code == 204, r.text
        offset = int(r.headers["upload-offset"])
    assert offset == len(data)
    (call,) = env.completed.calls
    assert call["data"] == data
    assert call["sha256"] == hashlib.sha256(data).hexdigest()
    assert call["filename"] == "r\u00e9sum\u00e9.bin"
    assert call["content_type"] == "application/x-test"
    assert call["size"] == len(data)
    assert call["path"] is None  # the stored object, handed on where it lies
    info = env.store.load(url.rsplit("/", 1)[1])
    assert info is not None
    assert info.record is not None
    assert info.record["sha256"] == call["sha256"]
    # The data was handed on; HEAD still tells a resuming client that it is done.
    assert not env.has_data(info.id)
    r = client.head(url)
    assert r.headers["upload-offset"] == str(len(data))
    assert "upload-expires" not in r.headers


def test_creation_with_upload_and_empty_file(
    env: Env, server: Server, client: httpx.Client
) -> None:
    r = client.post(server.url, content=b"hello", headers={**OCT, "Upload-Length": "5"})
    assert r.status_code == 201
    assert r.headers["upload-offset"] == "5"
    r = client.post(server.url, headers={"Upload-Length": "0"})
    assert r.status_code == 201
    # A zero-length upload is complete at once; an empty PATCH changes nothing.
    r = patch(client, server.base + r.headers["location"], 0, b"")
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "0"
    assert [c["data"] for c in env.completed.calls] == [b"hello", b""]


def test_deferred_length(env: Env, server: Server, client: httpx.Client) -> None:
    url = create(client, server, None)
    assert client.head(url).headers["upload-defer-length"] == "1"
    assert patch(client, url, 0, b"abc").status_code == 204
    assert env.completed.calls == []
    r = patch(client, url, 3, b"def", **{"Upload-Length": "6"})
    assert r.status_code == 204
    assert env.completed.calls[0]["data"] == b"abcdef"


def test_error_statuses(env: Env, client: httpx.Client) -> None:
    server = env.start(max_size=100)
    url = create(client, server, 10)
    assert patch(client, url, 3, b"x").status_code == 409
    r = client.patch(url, content=b"x", headers={"Upload-Offset": "0"})
    assert r.status_code == 415
    assert json.loads(r.text)["error"]
    assert httpx.head(url).status_code == 412
    assert httpx.head(url).headers["tus-version"] == "1.0.0"
    assert client.head(server.url + "A" * 22).status_code == 404
    assert client.head(server.url + "..%2F..%2Fetc").status_code == 404
    assert client.post(server.url, headers={"Upload-Length": "101"}).status_code == 413
    assert patch(client, url, 0, b"x" * 11).status_code == 413
    # A chunked body past the length is cut off with 413 too.
    r = client.patch(url, content=iter([b"x" * 6, b"x" * 6]), headers={**OCT, "Upload-Offset": "0"})
    assert r.status_code == 413
    assert client.get(url).status_code == 405
    assert client.post(server.url, headers={"Upload-Length": "x"}).status_code == 400
    assert env.completed.calls == []


def test_method_override(server: Server, client: httpx.Client) -> None:
    url = create(client, server, 4)
    r = client.post(
        url, content=b"ab", headers={**OCT, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}
    )
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "2"
    r = client.post(url, headers={"X-HTTP-Method-Override": "DELETE"})
    assert r.status_code == 204
    assert client.head(url).status_code == 404


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
def test_checksum(env: Env, server: Server, client: httpx.Client, algorithm: str) -> None:
    url = create(client, server, 6)

    def digest(data: bytes) -> str:
        return f"{algorithm} " + base64.b64encode(hashlib.new(algorithm, data).digest()).decode()

    r = patch(client, url, 0, b"abc", **{"Upload-Checksum": digest(b"abc")})
    assert r.status_code == 204
    r = patch(client, url, 3, b"deX", **{"Upload-Checksum": digest(b"def")})
    assert r.status_code == 460
    assert client.head(url).headers["upload-offset"] == "3"
    r = patch(client, url, 3, b"def", **{"Upload-Checksum": "crc32 AAAAAA=="})
    assert r.status_code == 400
    r = patch(client, url, 3, b"def", **{"Upload-Checksum": digest(b"def")})
    assert r.status_code == 204
    assert env.completed.calls[0]["data"] == b"abcdef"


def test_lock_held_elsewhere_is_423(env: Env, server: Server, client: httpx.Client) -> None:
    url = create(client, server, 4)
    upload_id = url.rsplit("/", 1)[1]
    other_server = lock_for(env.store, ttl=30, clock=env.clock)
    assert other_server.acquire(upload_id, "other-server") is not None
    assert patch(client, url, 0, b"ab").status_code == 423
    assert client.delete(url).status_code == 423
    # The lease runs out: a crashed server does not block the upload for ever.
    env.clock.now += 31
    assert patch(client, url, 0, b"ab").status_code == 204


def test_concurrent_patch_in_process_is_423(env: Env, server: Server, client: httpx.Client) -> None:
    url = create(client, server, 1000)
    host, port = server.base.removeprefix("http://").split(":")
    path = url.removeprefix(server.base)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b"x" * 10
        )
        # Wait until the first request holds the lease, then try a second one.
        deadline = time.monotonic() + 30
        while env.lease_owner(url.rsplit("/", 1)[1]) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status = patch(client, url, 0, b"y").status_code
        assert status == 423
        sock.sendall(b"x" * 990)
        assert sock.recv(100).startswith(b"HTTP/1.1 204")


def test_interrupted_patch_keeps_what_arrived(
    env: Env, server: Server, client: httpx.Client
) -> None:
    data = bytes(range(256)) * 40
    url = create(client, server, len(data))
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"PATCH {url.removeprefix(server.base)} HTTP/1.1\r\nHost: x\r\n"
            "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data[:4000]
        )
        time.sleep(0.2)
    offset = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = client.head(url)
        offset = int(r.headers["upload-offset"])
        if offset == 4000:
            break
        time.sleep(0.02)
    assert offset == 4000
    deadline = time.monotonic() + 30
    while True:
        r = patch(client, url, offset, data[offset:])
        # The dropped request may still hold the lock briefly.
        if r.status_code != 423 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert r.status_code == 204
    assert env.completed.calls[0]["data"] == data


def test_restart_loses_nothing(env: Env, client: httpx.Client) -> None:
    first = env.start()
    url = create(client, first, 10, **{"Upload-Metadata": f"filename {b64('a.txt')}"})
    assert patch(client, url, 0, b"01234").status_code == 204
    first.stop()
    second = env.start()
    url = url.replace(first.base, second.base)
    r = client.head(url)
    assert r.headers["upload-offset"] == "5"
    assert patch(client, url, 5, b"56789").status_code == 204
    assert env.completed.calls[0]["data"] == b"0123456789"
    assert env.completed.calls[0]["filename"] == "a.txt"


def test_expiry(env: Env, client: httpx.Client) -> None:
    server = env.start(expiry=60.0)
    url = create(client, server, 10)
    assert patch(client, url, 0, b"abc").status_code == 204
    env.clock.now += 59
    # A write pushes the expiry on.
    assert patch(client, url, 3, b"d").status_code == 204
    env.clock.now += 59
    assert client.head(url).status_code == 200
    env.clock.now += 2
    assert client.head(url).status_code == 410
    assert patch(client, url, 4, b"e").status_code == 410
    import asyncio

    removed = asyncio.run(server.app.sweep())
    assert removed == [url.rsplit("/", 1)[1]]
    assert client.head(url).status_code == 404


def test_concatenation(env: Env, server: Server, client: httpx.Client) -> None:
    a = create(client, server, 3, **{"Upload-Concat": "partial"})
    b = create(client, server, 2, **{"Upload-Concat": "partial"})
    assert client.head(a).headers["upload-concat"] == "partial"
    assert patch(client, a, 0, b"abc").status_code == 204
    # Partial uploads are not files on their own.
    assert env.completed.calls == []
    r = client.post(server.url, headers={"Upload-Concat": f"final;{a} {b}"})
    assert r.status_code == 400  # b is not finished
    assert patch(client, b, 0, b"de").status_code == 204
    assert env.completed.calls == []
    r = client.post(
        server.url,
        headers={
            "Upload-Concat": f"final;{a.removeprefix(server.base)} {b}",
            "Upload-Metadata": f"filename {b64('ab.txt')}",
        },
    )
    assert r.status_code == 201
    final = server.base + r.headers["location"]
    h = client.head(final)
    assert h.headers["upload-length"] == "5"
    assert h.headers["upload-offset"] == "5"
    assert h.headers["upload-concat"].startswith("final;")
    assert patch(client, final, 5, b"").status_code == 403
    (call,) = env.completed.calls
    assert (call["data"], call["filename"]) == (b"abcde", "ab.txt")


def test_handlers_refuse_upload(env: Env, client: httpx.Client) -> None:
    server = env.start(handlers=[HashingHandler("sha256"), lambda: SizeLimitHandler(3)])
    url = create(client, server, 4)
    r = patch(client, url, 0, b"abcd")
    assert r.status_code == 413
    assert client.head(url).status_code == 404


def test_on_complete_refuses_upload(env: Env, client: httpx.Client) -> None:
    def refuse(file: object, info: object) -> None:
        raise UnsupportedMediaType("not this")

    server = env.start(on_complete=refuse)
    url = create(client, server, 2)
    assert patch(client, url, 0, b"ab").status_code == 415
    assert client.head(url).status_code == 404


async def test_async_on_complete_and_no_callback(env: Env, client: httpx.Client) -> None:
    seen: list[int] = []

    async def record(file: object, info: object) -> dict[str, int]:
        seen.append(1)
        return {"n": 1}

    server = env.start(on_complete=record)
    url = create(client, server, 1)
    assert patch(client, url, 0, b"a").status_code == 204
    assert seen == [1]
    server2 = env.start(on_complete=None)
    url = create(client, server2, 1)
    assert patch(client, url, 0, b"a").status_code == 204
    # Without a callback the data stays in the store.
    assert env.has_data(url.rsplit("/", 1)[1])


def test_store_for(tmp_path: Path) -> None:
    store = tus_store_for(tmp_path / "a")
    assert isinstance(store.storage, LocalStorage)
    assert tus_store_for(store) is store
    storage = LocalStorage(tmp_path / "b")
    assert tus_store_for(storage).storage is storage
    with pytest.raises(TypeError):
        tus_store_for(object())


async def test_lifespan_and_background_sweep(tmp_path: Path) -> None:
    import asyncio

    from spoolup.tus import create_tus_app

    now = [0.0]
    app = create_tus_app(tmp_path, expiry=5.0, sweep_interval=0.01, clock=lambda: now[0])
    store = app.store
    from spoolup.tus.state import UploadInfo

    store.create(UploadInfo(id="C" * 22, length=3, expires=5.0))
    messages: list[Mapping[str, object]] = [
        {"type": "lifespan.startup"},
        {"type": "lifespan.shutdown"},
    ]
    sent: list[dict[str, object]] = []

    async def receive() -> Mapping[str, object]:
        await asyncio.sleep(0)
        return messages.pop(0)

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    # A request starts the sweeper; an expired upload is gone soon after.
    async def receive_empty() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "OPTIONS", "path": "/", "headers": []}
    now[0] = 10.0
    await app(scope, receive_empty, send)
    for _ in range(200):
        if store.load("C" * 22) is None:
            break
        await asyncio.sleep(0.01)
    assert store.load("C" * 22) is None
    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent][-2:] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert app._sweeper is None
