"""Connection bounds of `spoolup serve`: header size (431), deadlines (408), the cap (503)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from spoolup.server.protocol import ConnectionLimits, connection_cap
from tests.serve_process import serve
from tests.server.conftest import RunningServer, wait_for_log

MiB = 1024 * 1024


def _connect(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture(scope="module")
def strict(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(header_timeout=1.0, body_timeout=1.0, max_connections=8)


def test_request_head_over_the_limit_is_431_before_the_app(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000)
        response = _read_all(sock)
    assert _status(response) == 431
    assert b"request headers too large" in response


def test_many_headers_adding_up_over_the_limit_are_431(server: RunningServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: bbbbbbbbbbbbbbbb\r\n" * 4000
    with _connect(server) as sock:
        sock.sendall(head + b"\r\n")
        assert _status(_read_all(sock)) == 431


def test_a_head_under_the_limit_is_served(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Ok: "
            + b"a" * 40_000
            + b"\r\nConnection: close\r\n\r\n"
        )
        assert _status(_read_all(sock)) == 200


def _trickle_until_closed(sock: socket.socket) -> bool:
    """Send a byte every 0.1 s until the server closes (True) or 20 s pass (False)."""
    deadline = time.monotonic() + 20
    closed = False
    while time.monotonic() < deadline and not closed:
        try:
            sock.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        time.sleep(0.1)
        sock.setblocking(False)
        try:
            data = sock.recv(65536)
            assert _status(data) in {0, 408}
            closed = closed or data == b"" or _status(data) == 408
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed = True
        sock.setblocking(True)
    return closed


def test_a_head_sent_one_byte_at_a_time_times_out(strict: RunningServer) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert _trickle_until_closed(sock), "a head trickling in was never timed out"


# A second request whose head began in the packet of the first: once the first is
# answered, its head is still bounded and timed like any other.
_PIPELINED = (
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
)


def _first_answer(sock: socket.socket) -> bytes:
    got = b""
    while not (b"\r\n\r\n" in got and got.endswith(b"}")):
        chunk = sock.recv(65536)
        assert chunk, got
        got += chunk
    return got


def test_a_pipelined_head_is_bounded_after_the_answer_before_it(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_PIPELINED)
        assert _status(_first_answer(sock)) == 200
        try:
            for _ in range(32):  # 2 MiB, far over the 64 KiB bound
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # Without the bound the server buffers on and never answers (the read times out).
        response = _read_all(sock)
    # 431, or a reset that overtook it (bytes sent after the refusal were never read).
    assert _status(response) in {0, 431}, response[:200]


@pytest.fixture(scope="module")
def quick_head(make_server: Callable[..., RunningServer]) -> RunningServer:
    # Only the head deadline is short: a longer body deadline must not stand in for it.
    return make_server(header_timeout=1.0)


def test_a_pipelined_head_times_out_after_the_answer_before_it(quick_head: RunningServer) -> None:
    with _connect(quick_head) as sock:
        sock.sendall(_PIPELINED)
        assert _status(_first_answer(sock)) == 200
        assert _trickle_until_closed(sock), "a pipelined head trickling in was never timed out"


def test_blank_lines_after_an_answer_do_not_hold_the_connection(quick_head: RunningServer) -> None:
    # Blank lines before a request line begin no request for the parser, and the first
    # byte stops uvicorn's keep-alive timer: the head deadline must run from that byte.
    with _connect(quick_head) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _status(_first_answer(sock)) == 200
        sock.sendall(b"\r\n")
        sock.settimeout(20)  # without the deadline the read times out here
        assert _status(_read_all(sock)) == 408


def test_a_silent_connection_is_closed(strict: RunningServer) -> None:
    with _connect(strict) as sock:
        started = time.monotonic()
        response = _read_all(sock)
    assert _status(response) == 408
    assert time.monotonic() - started < 20


def test_a_stalled_body_is_dropped_and_leaves_nothing(strict: RunningServer) -> None:
    with _connect(strict) as sock:
        sock.sendall(
            b"PUT /api/files/stall.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"x" * 5000
        )
        response = _read_all(sock)
    assert _status(response) == 408
    with strict.client() as client:
        assert client.get("/api/files").json() == []
    assert not [p for p in strict.storage.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def capped(make_server: Callable[..., RunningServer]) -> RunningServer:
    # Head deadline far longer than the test: the held connections must stay open.
    return make_server(max_connections=8)


def test_connections_beyond_the_cap_are_503(capped: RunningServer) -> None:
    strict = capped
    # The server accepts in connection order, so the extra one comes after the 8 held.
    held = [_connect(strict) for _ in range(8)]
    try:
        with _connect(strict) as extra:
            response = _read_all(extra)
        assert _status(response) == 503
        assert b"too many connections" in response
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the room comes back once they are gone
        with strict.client() as client:
            if client.get("/healthz").status_code == 200:
                break
        time.sleep(0.1)
    else:
        pytest.fail("the server did not take connections again")


def test_the_cap_stays_below_the_file_descriptor_limit() -> None:
    assert connection_cap(ConnectionLimits(max_connections=4096), 1024) < 512
    assert connection_cap(ConnectionLimits(max_connections=100), 1_000_000) == 100


@pytest.mark.slow
def test_eight_64_mib_header_lines_keep_server_memory_bounded(tmp_path: Path) -> None:
    """The issue's reproduction: 8 parallel 64 MiB header lines once added 560 MiB."""
    with serve(tmp_path) as running:
        host, port = running.url.removeprefix("http://").split(":")
        baseline = running.rss
        peak = baseline
        sent: list[int] = []
        done = threading.Event()

        def flood() -> None:
            total = 0
            line = b"a" * MiB
            try:
                with socket.create_connection((host, int(port)), timeout=30) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
                    for _ in range(64):
                        sock.sendall(line)
                        total += len(line)
            except OSError:
                pass
            sent.append(total)

        threads = [threading.Thread(target=flood) for _ in range(8)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, running.rss)
            time.sleep(0.02)
        done.set()
        growth = peak - baseline
    assert growth < 48 * MiB, f"server grew by {growth / MiB:.0f} MiB"
    # The server stopped reading each flood long before its 64 MiB were sent.
    assert max(sent) < 32 * MiB, sent


def test_an_http11_request_without_host_is_400_before_the_app(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /api/files HTTP/1.1\r\nConnection: close\r\n\r\n")
        response = _read_all(sock)
    assert _status(response) == 400, response[:200]
    assert b"Host header" in response


def test_a_request_with_two_host_headers_is_400(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"GET /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n"
            b"Connection: close\r\n\r\n"
        )
        response = _read_all(sock)
    assert _status(response) == 400, response[:200]
    assert b"more than one Host header" in response


def test_an_http10_request_without_host_is_served(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        response = _read_all(sock)
    assert response.startswith(b"HTTP/1.1 200"), response[:200]


@pytest.fixture(scope="module")
def min_rate(make_server: Callable[..., RunningServer]) -> RunningServer:
    # 20 kB in every 1 s window: a byte every few ms never looks idle, but is too slow.
    return make_server(body_timeout=1.0, min_body_rate=20_000)


def _send_body(sock: socket.socket, chunk: bytes, pause: float, total: int) -> bytes:
    """Send ``total`` bytes as ``chunk`` every ``pause`` seconds; the answer once it comes."""
    sent = 0
    deadline = time.monotonic() + 60
    sock.setblocking(False)
    got = b""
    while time.monotonic() < deadline and not got:
        if sent < total:
            try:
                sent += sock.send(chunk[: total - sent])
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
        time.sleep(pause)
        try:
            got = sock.recv(65536)
            if not got:
                break
        except BlockingIOError:
            pass
        except ConnectionResetError:
            break
    sock.setblocking(True)
    sock.settimeout(30)
    try:
        while got.count(b"\r\n\r\n") < 1 or not got.endswith(b"}"):
            more = sock.recv(65536)
            if not more:
                break
            got += more
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def test_a_body_under_the_minimum_rate_is_cut_with_408(
    min_rate: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with _connect(min_rate) as sock:
        sock.sendall(
            b"PUT /api/files/trickle.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        started = time.monotonic()
        # About 2 kB/s: never silent for the 1 s idle deadline, a tenth of the minimum.
        response = _send_body(sock, b"x" * 100, 0.05, 10_000_000)
    assert _status(response) == 408, response[:200]
    assert b"request body too slow" in response
    assert time.monotonic() - started < 30
    # The access log shows the answer the client got, not the one the app tried.
    assert '"PUT /api/files/trickle.bin" 408 ' in wait_for_log(caplog, "spoolup.access", "trickle")
    assert "request bodies too slow" in wait_for_log(caplog, "spoolup.server", "too slow")
    with min_rate.client() as client:
        assert client.get("/api/files").json() == []


def test_a_body_over_the_minimum_rate_is_received(min_rate: RunningServer) -> None:
    # Over three windows at about 300 kB/s, fifteen times the minimum.
    size = 16 * 65536
    with _connect(min_rate) as sock:
        sock.sendall(
            b"PUT /api/files/steady.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: " + str(size).encode() + b"\r\nConnection: close\r\n\r\n"
        )
        response = _send_body(sock, b"y" * 65536, 0.2, size)
    assert _status(response) == 201, response[:300]


def _chunked_put(name: str) -> bytes:
    return (
        f"PUT /api/files/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
    ).encode()


def test_trailers_of_a_chunked_body_are_bounded_like_a_head(server: RunningServer) -> None:
    # Trailer lines after the last chunk never end: the server stops reading them once
    # they pass the head's limit, instead of keeping every one in memory.
    line = b"X-Trailer: " + b"t" * 1000 + b"\r\n"
    sent = 0
    with _connect(server) as sock:
        sock.sendall(_chunked_put("trailers.bin"))
        try:
            while sent < 64 * MiB:
                sock.sendall(line * 64)
                sent += len(line) * 64
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = _read_all(sock)
    assert sent < 16 * MiB, sent
    assert _status(response) == 431, response[:200]
    with server.client() as client:
        assert "trailers.bin" not in str(client.get("/api/files").json())


def test_a_host_trailer_does_not_stand_for_the_next_requests_host(server: RunningServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_chunked_put("host-trailer.bin") + b"Host: 127.0.0.1\r\n\r\n")
        first = sock.recv(65536)
        assert _status(first) == 201, first[:300]
        sock.sendall(b"GET /api/files HTTP/1.1\r\nConnection: close\r\n\r\n")
        second = _read_all(sock)
    assert _status(second) == 400, second[:300]
    assert b"Host header" in second
    with server.client() as client:
        client.delete("/api/files/host-trailer.bin")


def test_a_refused_pipelined_request_is_answered_after_the_one_before(
    server: RunningServer,
) -> None:
    # The PUT is answered first, then the GET (no Host: 400), in the order they came.
    put = b"PUT /api/files/piped.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    with _connect(server) as sock:
        sock.sendall(put + b"GET /api/files HTTP/1.1\r\n\r\n")
        response = _read_all(sock)
    first, _, second = response.partition(b"HTTP/1.1 ")[2].partition(b"HTTP/1.1 ")
    assert first.startswith(b"201"), response[:600]
    assert second.startswith(b"400"), response[:600]
    with server.client() as client:
        client.delete("/api/files/piped.bin")


def test_nothing_pipelined_after_a_refused_request_is_run(server: RunningServer) -> None:
    put = b"PUT /api/files/after.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nx"
    with _connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + b"GET / HTTP/1.1\r\n\r\n" + put
        )
        response = _read_all(sock)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", response) == [b"200", b"400"], response
    with server.client() as client:
        assert client.get("/api/files/after.bin").status_code == 404
