"""What the server says when it starts, and the storage check before it listens."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from spoolup.limits import Limits
from spoolup.server.about import banner, limits_json
from spoolup.server.config import ConfigError, ServerConfig
from spoolup.server.startup import (
    MALLOC_ARENAS,
    StorageUnusable,
    check_ports,
    open_checked_store,
)
from spoolup.storage import LocalStorage, StorageError


def test_banner_says_where_to_go_and_what_is_on(tmp_path: Path) -> None:
    config = ServerConfig(storage=str(tmp_path / "data"), limits=Limits(max_file_size=3_000_000))
    text = banner(config, "http://127.0.0.1:8000/")
    assert "is ready: open http://127.0.0.1:8000/" in text
    assert f"storage  {(tmp_path / 'data').resolve()}" in text
    assert "token    off: anyone who can reach this address" in text
    assert "files up to 3 MB" in text
    assert "links    off (they need a token)" in text
    guarded = banner(ServerConfig(storage="s3://bucket/team", token="t", share_ttl=3600), "u")
    assert "storage  s3://bucket/team" in guarded
    assert "token    on" in guarded
    assert "links last up to 1 h" in guarded
    assert "metrics" not in text  # on the main port: nothing more to say
    own_port = banner(config, "u", metrics_url="http://127.0.0.1:9100/metrics")
    assert "  metrics  http://127.0.0.1:9100/metrics (no token)\n  stop     Ctrl-C" in own_port


def test_limits_json() -> None:
    info = limits_json(ServerConfig(limits=Limits(max_files=7)), links=object())
    assert info["max_files"] == 7
    assert info["links"] is True
    assert limits_json(ServerConfig())["links"] is False


def test_storage_is_checked_before_listening(tmp_path: Path) -> None:
    store = open_checked_store(str(tmp_path / "ok"))
    assert list((tmp_path / "ok").rglob("probe*")) == []  # the probe object is gone
    assert store.storage is not None
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageUnusable, match="check that the folder"):
        open_checked_store(str(blocker / "sub"))


def test_storage_that_cannot_be_written_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise StorageError("read-only file system")

    monkeypatch.setattr(LocalStorage, "write", refuse)
    with pytest.raises(StorageUnusable, match="read-only file system"):
        open_checked_store(str(tmp_path / "ro"))


def test_banner_names_the_port_really_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading
    import time

    import httpx
    import uvicorn

    from spoolup.server.app import create_app
    from spoolup.server.startup import BannerServer

    config = ServerConfig(storage=str(tmp_path / "data"), port=0)
    app = create_app(config)
    server = BannerServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None), config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        err = capsys.readouterr().err
        url = err.split("open ", 1)[1].split()[0]
        assert not url.endswith(":0/")
        assert httpx.get(url).status_code == 200
    finally:
        server.should_exit = True
        thread.join(15)


def test_a_port_is_checked_on_every_address_the_host_has(tmp_path: Path) -> None:
    # As asyncio's server does: an address the machine lacks (a family that is off, as
    # IPv6 in some containers) is skipped, not reported as a port taken.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ServerConfig(storage=str(tmp_path), host="127.0.0.1", port=port)
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port} \(--port\): address in use"):
            check_ports(config)
    check_ports(config)  # free again
    absent = ServerConfig(storage=str(tmp_path), host="192.0.2.1", port=port, insecure=True)
    check_ports(absent)  # not this machine's address: uvicorn says so itself


# Threads allocating at once, then glibc's own account of its arenas (one <heap> each).
_ARENAS = """
import ctypes, sys, tempfile, threading
from spoolup.server.startup import limit_malloc_arenas
print(limit_malloc_arenas({} if sys.argv[1] == "limit" else {"MALLOC_ARENA_MAX": "8"}))
start = threading.Barrier(8)
def allocate():
    start.wait()
    kept = [bytearray(300_000) for _ in range(50)]
    del kept
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile() as out:
    stream = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(out.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_serve_holds_malloc_to_a_few_arenas(tmp_path: Path) -> None:
    # Many worker threads each got an arena, and memory freed in one served only it.
    def arenas(mode: str) -> tuple[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", _ARENAS, mode], capture_output=True, text=True, check=True
        )
        applied, count = done.stdout.split()
        return applied, int(count)

    assert arenas("limit") == ("True", MALLOC_ARENAS)
    applied, count = arenas("operator's own")
    assert applied == "False"  # an operator's MALLOC_ARENA_MAX is left alone
    assert count > MALLOC_ARENAS  # what the limit prevents, on this machine
