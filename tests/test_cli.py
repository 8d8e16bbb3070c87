"""`spoolup upload` against a real server, its retries and checks; `spoolup serve` as a process."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.serving import free_port
from spoolup import cli
from spoolup._units import format_size
from spoolup.commands import upload as upload_cmd
from spoolup.server.config import ServerConfig
from spoolup.server.store import RecordStore
from tests.server.conftest import RunningServer, start_server
from tests.tus.conftest import CountingStorage


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmpdir = tmp_path_factory.mktemp("tmp")
    storage = tmp_path_factory.mktemp("storage")
    running = start_server(ServerConfig(storage=str(storage), token="cli-token"), tmpdir)
    yield running
    running.stop()
    assert running.temp_files() == []


def test_upload_prints_checked_records(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = tmp_path / "one.txt"
    one.write_bytes(b"first file\n")
    two = tmp_path / "two words.bin"
    two.write_bytes(os.urandom(3 * upload_cmd.CHUNK_SIZE + 5))
    code = cli.main(["upload", str(one), str(two), "--url", server.url, "--token", "cli-token"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["filename"] for r in records] == ["one.txt", "two words.bin"]
    assert records[0]["content_type"] == "text/plain"
    assert records[1]["sha256"] == hashlib.sha256(two.read_bytes()).hexdigest()
    assert records[1]["size"] == two.stat().st_size
    with server.client("cli-token") as client:
        assert client.get(f"/api/files/{records[1]['id']}").content == two.read_bytes()


def test_upload_token_from_environment(
    server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "env.txt"
    path.write_bytes(b"")
    monkeypatch.setenv("SPOOLUP_TOKEN", "cli-token")
    assert cli.main(["upload", str(path), "--url", server.url, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 0


def test_upload_failures_exit_non_zero(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"data")
    # A refused token is exit status 3, found before any file is sent.
    assert cli.main(["upload", str(path), "--url", server.url, "--token", "wrong"]) == 3
    err = capsys.readouterr().err
    assert "invalid bearer token" in err
    assert "SPOOLUP_TOKEN" in err
    argv = ["upload", str(tmp_path / "missing"), str(path), "--url", server.url]
    assert cli.main([*argv, "--token", "cli-token"]) == 1
    err = capsys.readouterr().err
    assert "missing: no such file or folder" in err
    assert "1 uploaded (4 B), 1 failed of 2 files" in err


def test_upload_retries_connection_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.bin"
    data = os.urandom(100_000)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.read()
        calls.append(len(body))
        if len(calls) < 3:
            raise httpx.ConnectError("refused")
        assert body == data
        return httpx.Response(201, json={"id": "x", "sha256": digest, "size": len(data)})

    pauses: list[float] = []
    seen: list[tuple[int | None, int]] = []
    with httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler)) as client:
        record = upload_cmd.upload_one(
            client, path, retries=5, progress=lambda d, t: seen.append((d, t)), sleep=pauses.append
        )
    assert record["sha256"] == digest
    assert pauses == [0.5, 1.0]
    assert seen[-1] == (len(data), len(data))


def test_upload_gives_up_after_bounded_retries(tmp_path: Path) -> None:
    path = tmp_path / "r.bin"
    path.write_bytes(b"x")

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    pauses: list[float] = []
    with (
        httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler)) as client,
        pytest.raises(upload_cmd.UploadFailed, match="gave up after 7 attempts"),
    ):
        upload_cmd.upload_one(
            client, path, retries=6, progress=lambda d, t: None, sleep=pauses.append
        )
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(201, json={"sha256": "0" * 64}), "sha256 mismatch"),
        (
            httpx.Response(413, json={"error": "file exceeds the limit max_file_size=1"}),
            "413: file exceeds",
        ),
        (httpx.Response(500, text="boom"), "500: boom"),
        (httpx.Response(502, json=["no error key"]), "502"),
    ],
)
def test_upload_refused_or_mismatched(tmp_path: Path, response: httpx.Response, match: str) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"abc")
    transport = httpx.MockTransport(lambda request: response)
    with (
        httpx.Client(base_url="http://test", transport=transport) as client,
        pytest.raises(upload_cmd.UploadFailed, match=match),
    ):
        upload_cmd.upload_one(client, path, retries=0, progress=lambda d, t: None)


def test_upload_mismatch_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"abc")
    real_client = httpx.Client

    def fake_client(**kwargs: object) -> httpx.Client:
        def answer(request: httpx.Request) -> httpx.Response:
            if request.method == "GET":  # no limits to check, no such file yet
                return httpx.Response(404 if request.url.path == "/api/limits" else 200, json=[])
            return httpx.Response(201, json={"sha256": "bad"})

        kwargs["transport"] = httpx.MockTransport(answer)
        return real_client(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "Client", fake_client)
    assert cli.main(["upload", str(path), "--url", "http://test"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err


def test_serve_refuses_public_host_without_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPOOLUP_TOKEN", raising=False)
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2
    assert "without a token" in capsys.readouterr().err
    assert cli.main(["serve", "--storage", "ftp://x"]) == 2
    assert "s3://bucket/prefix" in capsys.readouterr().err


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "spoolup serve exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("spoolup serve did not start")


def test_serve_process_finishes_running_upload_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    storage = tmp_path / "data"
    env = {
        **os.environ,
        "TMPDIR": str(tmpdir),
        "SPOOLUP_TOKEN": "t0k",
        "SPOOLUP_MAX_FILE_SIZE": "10MiB",
    }
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "spoolup.cli", "serve", "--port", str(port)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "--storage", str(storage)], env=env, stdout=log_file, stderr=log_file
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        first_chunk_sent = threading.Event()

        def slow_body() -> Iterator[bytes]:
            for i in range(10):
                yield bytes([i]) * 100_000
                first_chunk_sent.set()
                time.sleep(0.1)

        result: dict[str, httpx.Response] = {}

        def send() -> None:
            result["response"] = httpx.put(
                f"{url}/api/files/slow.bin",
                content=slow_body(),
                headers={"Authorization": "Bearer t0k", "Content-Length": "1000000"},
                timeout=30,
            )

        sender = threading.Thread(target=send)
        sender.start()
        assert first_chunk_sent.wait(10)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        sender.join(30)
        response = result["response"]
        assert response.status_code == 201, response.text
        assert response.json()["size"] == 1_000_000
        # uvicorn finishes the upload and stops; SIGTERM ends like Ctrl-C, with status 0.
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = log.read_text()
    assert "PUT /api/files/slow.bin" in stderr  # the access log line
    assert " 201 in=1000000 " in stderr
    assert "spoolup serve: stopped" in stderr
    assert list(tmpdir.iterdir()) == []
    stored = [p for p in storage.rglob("*") if p.is_file() and "slow" not in p.name]
    assert any(p.stat().st_size == 1_000_000 for p in stored)


# ---------------------------------------------------------------- tus


def tus_uploads(root: Path) -> list[str]:
    """Ids of the tus uploads a server keeps state for under its storage ``root``."""
    return sorted(p.parent.name for p in (root / "tus").glob("*/info"))


def test_large_files_go_by_tus(
    server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    small = tmp_path / "small.txt"
    small.write_bytes(b"under the threshold")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * upload_cmd.CHUNK_SIZE + 7))
    before = tus_uploads(server.storage)
    argv = ["upload", str(small), str(big), "--url", server.url, "--token", "cli-token"]
    assert cli.main([*argv, "--tus-threshold", "1MiB", "--chunk-size", "1MiB"]) == 0
    small_record, big_record = map(json.loads, capsys.readouterr().out.splitlines())
    assert small_record["filename"] == "small.txt"
    assert big_record["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert (big_record["filename"], big_record["size"]) == ("big.bin", big.stat().st_size)
    assert big_record["content_type"] == "application/octet-stream"
    assert len(tus_uploads(server.storage)) == len(before) + 1  # only the big one
    with server.client("cli-token") as client:
        assert client.get(f"/api/files/{big_record['id']}").content == big.read_bytes()
    # Nothing is kept for resuming once the upload is complete.
    assert json.loads((tmp_path / "cache" / "spoolup" / "tus-uploads.json").read_text()) == {}


def test_tus_refusal_says_why(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "a.bin"
    path.write_bytes(b"data")
    with (
        server.client("wrong") as client,
        pytest.raises(upload_cmd.UploadFailed, match=r"401.*SPOOLUP_TOKEN"),
    ):
        upload_cmd.upload_tus(
            client,
            path,
            endpoint=f"{server.url}/tus/",
            chunk_size=1024,
            retries=0,
            progress=lambda d, t: None,
        )


def test_tus_connection_lost_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "a.bin"
    path.write_bytes(b"data")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, headers={"Location": "/tus/u1"})
        raise httpx.ConnectError("refused")  # the server died after the creation

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(upload_cmd.UploadFailed, match="run the same command again to resume"),
    ):
        send_by_tus(client, path)


def test_serve_help_names_the_kind_of_each_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    pairs = re.findall(r"(--[a-z-]+) ([A-Z_|]+)\b", capsys.readouterr().out)
    assert len(pairs) > 30
    # N, S, SIZE, URL...: never argparse's default for a long flag, its whole name in
    # capitals (HOOK_PROGRESS_INTERVAL) that says nothing of what to type.
    assert [flag for flag, value in pairs if "_" in value] == []


def test_bad_chunk_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ["0", "lots"]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["upload", "x", "--chunk-size", bad])
        assert exit_info.value.code == 2
    assert "chunk size" in capsys.readouterr().err


def send_by_tus(client: httpx.Client, path: Path) -> dict[str, object]:
    """``upload_tus`` to a mock server at http://test/tus/, in 2-byte chunks, no retries."""
    return upload_cmd.upload_tus(
        client,
        path,
        endpoint="http://test/tus/",
        chunk_size=2,
        retries=0,
        progress=lambda d, t: None,
    )


def fake_tus(record: dict[str, object] | None) -> httpx.MockTransport:
    """A tus server that takes any upload whole and answers with ``record``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, headers={"Location": "/tus/u1"})
        size = str(int(request.headers["upload-offset"]) + len(request.read()))
        headers = {"Upload-Offset": size}
        if record is not None:
            encoded = base64.b64encode(json.dumps(record).encode()).decode()
            headers["Spoolup-File-Record"] = encoded
        return httpx.Response(204, headers=headers)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("record", "match"),
    [({"id": "x", "sha256": "0" * 64}, "sha256 mismatch"), (None, "did not send")],
)
def test_tus_record_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: dict[str, object] | None, match: str
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "m.bin"
    path.write_bytes(b"abc")
    with (
        httpx.Client(transport=fake_tus(record)) as client,
        pytest.raises(upload_cmd.UploadFailed, match=match),
    ):
        send_by_tus(client, path)
    with httpx.Client(transport=fake_tus(record)) as client, pytest.raises(upload_cmd.UploadFailed):
        send_by_tus(client, tmp_path / "missing")


def test_killed_upload_resumes_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tmp").mkdir()
    storage = CountingStorage(tmp_path / "storage", delay=0.05)
    config = ServerConfig(storage=str(tmp_path / "storage"))
    running = start_server(config, tmp_path / "tmp", store=RecordStore(storage))
    cache = tmp_path / "cache"
    path = tmp_path / "backup.tar"
    data = os.urandom(8 * 1024 * 1024 + 3)
    path.write_bytes(data)
    argv = ["upload", str(path), "--url", running.url, "--chunk-size", "256KiB", "--quiet"]
    try:
        # First run, in its own process: killed outright once 2 MiB are stored.
        process = subprocess.Popen(
            [sys.executable, "-m", "spoolup.cli", *argv],
            env={**os.environ, "XDG_CACHE_HOME": str(cache)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while storage.part_bytes < 2 * 1024 * 1024 and time.monotonic() < deadline:
            assert process.poll() is None, "the upload ended before it could be interrupted"
            time.sleep(0.01)
        process.kill()
        process.wait()
        (upload_id,) = tus_uploads(storage.root)
        lock = storage.root / ".tus-leases" / f"{upload_id}.lock"
        while lock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # the server is still ending the cut PATCH
        with running.client() as client:
            head = client.head(f"/tus/{upload_id}", headers={"Tus-Resumable": "1.0.0"})
        offset = int(head.headers["upload-offset"])
        assert 0 < offset < len(data)
        assert storage.part_bytes == offset
        # Second run: continues from the server's offset.
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
        assert cli.main(argv) == 0
        out, err = capsys.readouterr()
        record = json.loads(out)
        assert f"resuming at {format_size(offset)} of {format_size(len(data))}" in err
        assert storage.part_bytes - offset == len(data) - offset  # the rest, only the rest
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert tus_uploads(storage.root) == [upload_id]
        assert (storage.root / "files" / record["id"]).read_bytes() == data
    finally:
        running.stop()


def test_serve_operator_flags_reach_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--hook-url", "ftp://hooks.example/"]) == 2
    assert "hook_url must be an http:// or https:// URL" in capsys.readouterr().err
    assert cli.main(["serve", "--hook-timeout", "0"]) == 2
    assert "hook_timeout" in capsys.readouterr().err
    assert cli.main(["serve", "--metrics-port", "-1"]) == 2
    assert "metrics_port" in capsys.readouterr().err
    assert cli.main(["serve", "--part-budget", "1x"]) == 2
    assert "part_budget must be a size" in capsys.readouterr().err
