"""Host check, cross-origin writes and CORS: what another web site can make a browser do."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest

from spoolup.server.config import load_config
from spoolup.server.origins import default_allowed_hosts
from tests.server.conftest import RunningServer

APP = "https://app.example"
EVIL = "https://evil.example"
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def with_cors(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(cors_origins=(APP,))


def _upload(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post("/api/files", files={"f": ("a.txt", b"hello")}, headers=headers)


def _port(server: RunningServer) -> str:
    return server.url.rsplit(":", 1)[1]


def test_dns_rebinding_host_is_refused_on_every_path(server: RunningServer) -> None:
    with server.client() as client:
        record = _upload(client).json()[0]
        evil_host = {"Host": f"evil.example:{_port(server)}"}
        for path in ("/api/files", f"/api/files/{record['id']}", "/", "/healthz"):
            response = client.get(path, headers=evil_host)
            assert response.status_code == 421, path
            assert "hello" not in response.text
        assert client.get("/api/files", headers={"Host": f"localhost:{_port(server)}"}).is_success
        assert client.get("/api/files", headers={"Host": "[::1]"}).is_success


def test_two_host_headers_are_refused(server: RunningServer) -> None:
    # RFC 9112 3.2: a 400. The check reads one of them, a proxy may route by the other.
    host, port = server.url.removeprefix("http://").split(":")
    for hosts in (("127.0.0.1", "evil.example"), ("evil.example", "127.0.0.1")):
        head = "".join(f"Host: {name}:{port}\r\n" for name in hosts)
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(f"GET /api/files HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"more than one Host" in answer


def test_cross_origin_writes_are_refused(server: RunningServer) -> None:
    with server.client() as client:
        before = client.get("/api/files").json()
        assert _upload(client, Origin=EVIL).status_code == 403
        assert _upload(client, Origin="null").status_code == 403
        assert _upload(client, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
        put = client.put("/api/files/x.txt", content=b"x", headers={"Origin": EVIL})
        assert put.status_code == 403
        if before:
            gone = client.delete(f"/api/files/{before[0]['id']}", headers={"Origin": EVIL})
            assert gone.status_code == 403
        created = client.post("/tus/", headers={**TUS, "Upload-Length": "3", "Origin": EVIL})
        assert created.status_code == 403
        assert client.get("/api/files").json() == before


def test_same_origin_and_non_browser_writes_pass(server: RunningServer) -> None:
    with server.client() as client:
        own = server.url
        assert _upload(client, Origin=own, **{"Sec-Fetch-Site": "same-origin"}).status_code == 201
        assert _upload(client).status_code == 201  # curl, the CLI: no Origin at all
        other_port = f"http://127.0.0.1:{int(_port(server)) + 1}"
        assert _upload(client, Origin=other_port).status_code == 403


def test_tus_sends_no_cors_headers_to_unknown_origins(server: RunningServer) -> None:
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "PATCH"}
    with server.client() as client:
        response = client.options("/tus/", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        head = client.get("/api/files", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in head.headers


def test_configured_origin_gets_cors_and_may_write(with_cors: RunningServer) -> None:
    with with_cors.client() as client:
        stored = _upload(client, Origin=APP)
        assert stored.status_code == 201
        assert stored.headers["access-control-allow-origin"] == APP
        preflight = client.options(
            "/api/files", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP
        tus = client.options(
            "/tus/", headers={"Origin": APP, "Access-Control-Request-Method": "PATCH"}
        )
        assert tus.headers["access-control-allow-origin"] == APP
        created = client.post("/tus/", headers={**TUS, "Upload-Length": "3", "Origin": APP})
        assert created.status_code == 201
        assert _upload(client, Origin=EVIL).status_code == 403
        other = client.options(
            "/api/files", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_default_allowed_hosts() -> None:
    assert set(default_allowed_hosts("127.0.0.1")) >= {"localhost", "127.0.0.1", "::1"}
    assert default_allowed_hosts("0.0.0.0") == ("*",)
    assert default_allowed_hosts("files.example.org") == ("files.example.org",)


def test_hosts_and_origins_from_the_environment() -> None:
    config = load_config(
        environ={
            "SPOOLUP_ALLOWED_HOSTS": "files.example.org, *.example.net",
            "SPOOLUP_CORS_ORIGINS": APP,
            "SPOOLUP_HEADER_LIMIT": "32KiB",
        }
    )
    assert config.allowed_hosts == ("files.example.org", "*.example.net")
    assert config.cors_origins == (APP,)
    assert config.header_limit == 32 * 1024
