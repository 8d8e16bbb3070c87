"""Slow clients: 2,000 connections trickling a head; /healthz keeps answering; all time out."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.serve_process import serve

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SLOW = 2000


def _room_for(count: int) -> int:
    """Raise this process's open-file limit for ``count`` sockets; how many fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 200
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return min(count, soft - 200)


def test_slow_clients_do_not_starve_the_server(tmp_path: Path) -> None:
    count = _room_for(SLOW)
    if count < SLOW:
        print(f"open-file limit: {count} slow connections instead of {SLOW}")
    with serve(tmp_path, "--header-timeout", "8") as running:
        host, port = running.url.removeprefix("http://").split(":")
        server = psutil.Process(running.process.pid)
        slow: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = socket.create_connection((host, int(port)), timeout=30)
                sock.sendall(b"GET /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                slow.append(sock)
            took = []
            with httpx.Client(base_url=running.url, timeout=30) as client:
                for _ in range(30):
                    started = time.monotonic()
                    assert client.get("/healthz").status_code == 200
                    took.append(time.monotonic() - started)
                    for sock in slow[:50]:  # a few keep trickling
                        # On a loaded machine their head deadline may already have
                        # passed: the server closed them, as it should.
                        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                            sock.sendall(b"x")
            took.sort()
            # The issue asks for 1 s; a busy test machine gets a generous bound here
            # (benchmarks/bench_load.py measures the real p99).
            assert took[-1] < 10, took
            # The head deadline ends every one of them, trickling or not.
            deadline = time.monotonic() + 60
            while len(server.net_connections(kind="tcp")) > 50:
                assert time.monotonic() < deadline, "slow connections were never closed"
                time.sleep(0.5)
        finally:
            for sock in slow:
                sock.close()
