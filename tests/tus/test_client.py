"""The `spoolup upload` tus client: uploads, resumes when run again, survives refusals."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spoolup.tus.client import TusClientError, default_state_file, tus_upload
from tests.tus.conftest import Env, Server

DATA = bytes(range(256)) * 3000


class Stop(Exception):
    pass


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path / "store")
    yield e
    e.close()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "backup.tar"
    path.write_bytes(DATA)
    return path


def test_upload_whole(env: Env, src: Path, tmp_path: Path) -> None:
    server = env.start()
    seen: list[tuple[int, int]] = []
    result = tus_upload(
        src,
        server.url,
        chunk_size=100_000,
        content_type="application/x-tar",
        progress=lambda sent, total: seen.append((sent, total)),
        state_file=tmp_path / "state.json",
    )
    assert result.size == len(DATA)
    assert result.resumed_from == 0
    assert result.file_id == env.completed.calls[0]["id"]
    # From the start, every 100,000 bytes (each chunk goes in one 256 KiB step).
    assert seen == [(n, len(DATA)) for n in [*range(0, len(DATA), 100_000), len(DATA)]]
    assert result.sha256 == hashlib.sha256(DATA).hexdigest()
    call = env.completed.calls[0]
    assert (call["data"], call["filename"], call["content_type"]) == (
        DATA,
        "backup.tar",
        "application/x-tar",
    )
    assert json.loads((tmp_path / "state.json").read_text()) == {}


def test_resume_when_run_again(env: Env, src: Path, tmp_path: Path) -> None:
    server = env.start()
    state = tmp_path / "state.json"

    def stop_midway(sent: int, total: int) -> None:
        if sent >= 300_000:
            raise Stop

    with pytest.raises(Stop):
        tus_upload(src, server.url, chunk_size=100_000, progress=stop_midway, state_file=state)
    assert len(json.loads(state.read_text())) == 1
    env.servers[0].stop()
    again = env.start()
    # The stored URL names the first server's port: as after a restart on a new port,
    # an unknown URL is not fatal, it starts over; on the same endpoint it resumes.
    result = tus_upload(src, again.url, chunk_size=100_000, state_file=state)
    assert result.resumed_from == 0
    with pytest.raises(Stop):
        tus_upload(src, again.url, chunk_size=100_000, progress=stop_midway, state_file=state)
    # Stopped while the third chunk was on its way: the server kept what reached it.
    (url,) = [e["url"] for e in json.loads(state.read_text()).values() if again.base in e["url"]]
    head = httpx.head(url, headers={"Tus-Resumable": "1.0.0"})
    offset = int(head.headers["upload-offset"])
    assert 200_000 <= offset <= 300_000
    result = tus_upload(src, again.url, chunk_size=100_000, state_file=state)
    assert result.resumed_from == offset
    # The bytes sent before are hashed from the local file: the digest is whole.
    assert result.sha256 == hashlib.sha256(DATA).hexdigest()
    assert [c["data"] for c in env.completed.calls] == [DATA, DATA]


def test_expired_upload_starts_over(env: Env, src: Path, tmp_path: Path) -> None:
    server = env.start(expiry=10.0)
    state = tmp_path / "state.json"

    def stop(sent: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        tus_upload(src, server.url, chunk_size=100_000, progress=stop, state_file=state)
    env.clock.now += 11
    result = tus_upload(src, server.url, chunk_size=1 << 20, state_file=state, token="t")
    assert result.resumed_from == 0
    assert env.completed.calls[0]["data"] == DATA


def test_refused_upload_raises(env: Env, src: Path, tmp_path: Path) -> None:
    server = env.start(max_size=10)
    with pytest.raises(TusClientError, match="413"):
        tus_upload(src, server.url, state_file=tmp_path / "s.json")


def test_unreachable_server(src: Path, tmp_path: Path) -> None:
    with pytest.raises(TusClientError, match="failed after 2 tries"):
        tus_upload(
            src,
            "http://127.0.0.1:9/tus/",
            state_file=tmp_path / "s.json",
            retries=1,
            retry_delay=0,
        )


def test_server_losing_track_mid_upload(env: Env, src: Path, tmp_path: Path) -> None:
    server = env.start()

    def delete_it(response: httpx.Response) -> None:
        # Someone terminates the upload between two chunks.
        if response.request.method == "PATCH":
            httpx.delete(str(response.request.url), headers={"Tus-Resumable": "1.0.0"})

    with (
        httpx.Client(event_hooks={"response": [delete_it]}) as client,
        pytest.raises(TusClientError, match="404"),
    ):
        tus_upload(
            src, server.url, chunk_size=100_000, state_file=tmp_path / "s.json", client=client
        )


def test_default_state_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_state_file() == tmp_path / "spoolup" / "tus-uploads.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_state_file().parts[-3:] == (".cache", "spoolup", "tus-uploads.json")


def test_damaged_state_file_is_ignored(env: Env, src: Path, tmp_path: Path) -> None:
    server: Server = env.start()
    state = tmp_path / "s.json"
    state.write_text("[not a dict")
    assert tus_upload(src, server.url, state_file=state).resumed_from == 0
    state.write_text("[1]")
    assert tus_upload(src, server.url, state_file=state).resumed_from == 0


def test_damaged_chunk_is_sent_again(env: Env, src: Path, tmp_path: Path) -> None:
    server = env.start()
    damaged = {"done": False}

    def damage(request: httpx.Request) -> None:
        # Flip one byte of the second chunk once, as a bad link would.
        second = request.method == "PATCH" and request.headers["upload-offset"] == "100000"
        if second and not damaged["done"]:
            damaged["done"] = True
            body = bytearray(request.read())
            body[0] ^= 1
            request.stream = httpx.ByteStream(bytes(body))
            request._content = bytes(body)

    with httpx.Client(event_hooks={"request": [damage]}) as client:
        result = tus_upload(
            src, server.url, chunk_size=100_000, state_file=tmp_path / "s.json", client=client
        )
    assert damaged["done"]
    assert result.size == len(DATA)
    assert env.completed.calls[0]["data"] == DATA


def test_record_header_is_read_with_care() -> None:
    from spoolup.tus.client import _record

    good = base64.b64encode(json.dumps({"id": "x"}).encode()).decode()
    assert _record(good) == {"id": "x"}
    assert _record(None) is None
    assert _record("not base64!") is None
    assert _record(base64.b64encode(b"[1]").decode()) is None
    assert _record(base64.b64encode(b"{bad").decode()) is None


def test_hasher_reads_the_bytes_never_sent(tmp_path: Path) -> None:
    from spoolup.tus.client import _Hasher

    path = tmp_path / "f"
    path.write_bytes(DATA)
    with path.open("rb") as f:
        hasher = _Hasher(f)
        hasher.cover(1000, DATA[1000:2000])  # resumed at 1000: 0-1000 read locally
        hasher.cover(1500, DATA[1500:2500])  # the server went back: no byte twice
        assert hasher.hexdigest(len(DATA)) == hashlib.sha256(DATA).hexdigest()
        short = _Hasher(f)
        assert short.hexdigest(len(DATA) + 10) == hashlib.sha256(DATA).hexdigest()


def test_bad_chunk_size(src: Path) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        tus_upload(src, "http://127.0.0.1:9/tus/", chunk_size=0)


def test_refusal_without_json(src: Path, tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(403, json=["no"]))
    with httpx.Client(transport=transport) as client, pytest.raises(TusClientError) as info:
        tus_upload(src, "http://test/tus/", state_file=tmp_path / "s.json", client=client)
    assert info.value.status == 403
