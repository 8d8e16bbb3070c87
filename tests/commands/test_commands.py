"""spoolup ls, get, rm, share, upload of folders, limits, --help, Ctrl-C, serve's start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.serving import free_port
from spoolup import cli
from spoolup.limits import Limits
from spoolup.server.config import ServerConfig
from tests.server.conftest import RunningServer, start_server

TOKEN = "cmd-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    work = tmp_path_factory.mktemp("commands")
    (work / "tmp").mkdir()
    config = ServerConfig(
        storage=str(work / "storage"), token=TOKEN, limits=Limits(max_file_size=100_000)
    )
    running = start_server(config, work / "tmp")
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _env(server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPOOLUP_URL", server.url)
    monkeypatch.setenv("SPOOLUP_TOKEN", TOKEN)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_upload_folder_then_ls_get_rm(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "album"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.txt").write_bytes(b"1" * 1500)
    (folder / "sub" / "two.txt").write_bytes(os.urandom(2500))
    code, out, err = run(capsys, "upload", str(folder), "--quiet")
    assert code == 0, err
    assert [json.loads(line)["filename"] for line in out.splitlines()] == ["one.txt", "two.txt"]
    assert "2 uploaded (4 kB) of 2 files" in err
    # Again: both are there already, nothing is sent twice.
    code, out, err = run(capsys, "upload", str(folder), "--quiet")
    assert code == 0
    assert "0 uploaded (0 B), 2 already there of 2 files" in err

    code, out, err = run(capsys, "ls", "two", "--sort", "name")
    assert code == 0
    assert "two.txt" in out
    assert "2.5 kB" in out
    assert "one.txt" not in out
    assert "1 file matching 'two', 2.5 kB in all" in err

    code, out, err = run(capsys, "get", "two.txt", "-o", str(tmp_path / "copy.txt"))
    assert code == 0, err
    assert (tmp_path / "copy.txt").read_bytes() == (folder / "sub" / "two.txt").read_bytes()
    assert "sha256 checked" in err

    code, out, err = run(capsys, "rm", "one.txt", "nothing-here.txt")
    assert code == 1
    assert "deleted one.txt" in err
    assert "no file is named 'nothing-here.txt'" in err
    code, out, err = run(capsys, "ls", "--json")
    assert [json.loads(line)["filename"] for line in out.splitlines()].count("one.txt") == 0


def test_get_resumes_from_a_part_file_and_checks_sha256(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    with server.client(TOKEN) as client:
        record = client.put("/api/files/half.bin", content=data).json()
    (tmp_path / "half.bin.part").write_bytes(data[:20_000])
    code, _, err = run(capsys, "get", record["id"])
    assert code == 0, err
    assert "resuming at 20 kB" in err
    assert (tmp_path / "half.bin").read_bytes() == data
    assert not (tmp_path / "half.bin.part").exists()
    # A part file that is not the start of this file: caught by the sha256, removed.
    (tmp_path / "bad.bin.part").write_bytes(b"x" * 20_000)
    code, _, err = run(capsys, "get", record["id"], "-o", str(tmp_path / "bad.bin"))
    assert code == 1
    assert "sha256 mismatch" in err
    assert not (tmp_path / "bad.bin.part").exists()
    assert not (tmp_path / "bad.bin").exists()


def test_share_link_is_fetched_without_the_token(
    server: RunningServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with server.client(TOKEN) as client:
        client.put("/api/files/shared.txt", content=b"for a friend")
    code, out, err = run(capsys, "share", "shared.txt", "--ttl", "10m")
    assert code == 0, err
    link = out.strip()
    assert link.startswith(f"{server.url}/s/")
    assert "valid until" in err
    monkeypatch.delenv("SPOOLUP_TOKEN")
    code, _, err = run(capsys, "get", link, "-o", str(tmp_path / "friend.txt"))
    assert code == 0, err
    assert (tmp_path / "friend.txt").read_bytes() == b"for a friend"


def test_upload_link_from_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(capsys, "share", "--upload", "--max-size", "10kB", "--max-files", "1")
    assert code == 0, err
    assert "up to 1 file of 10 kB each" in err
    link = out.strip()
    from spoolup.commands import common
    from spoolup.commands import upload as upload_cmd

    sent_token: list[str | None] = []
    real_open = common.open_client

    def spying_open(*args: object) -> httpx.Client:
        client = real_open(*args)  # type: ignore[arg-type]
        sent_token.append(client.headers.get("authorization"))
        return client

    monkeypatch.setattr(upload_cmd, "open_client", spying_open)
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_bytes(b"s" * 100)
    big.write_bytes(b"b" * 20_000)
    code, out, err = run(capsys, "upload", str(big), str(small), "--url", link, "--quiet")
    assert code == 1
    assert "big.txt is 20 kB; this server takes files up to 10 kB (nothing was sent)" in err
    assert json.loads(out)["filename"] == "small.txt"
    assert sent_token == [None]  # SPOOLUP_TOKEN is set, but a link never gets it
    monkeypatch.delenv("SPOOLUP_TOKEN")
    code, _, err = run(capsys, "ls", "--url", link.rsplit("/u/", 1)[0])
    assert code == 3  # the link shows nothing; without the token, nothing is listed


def test_limits_are_checked_before_sending(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(b"p" * 150_000)
    with server.client(TOKEN) as client:
        before = client.get("/api/files").headers["spoolup-total-count"]
    code, _, err = run(capsys, "upload", str(path), "--quiet")
    assert code == 1
    assert "photo.png is 150 kB; this server takes files up to 100 kB (nothing was sent)" in err
    with server.client(TOKEN) as client:
        assert client.get("/api/files").headers["spoolup-total-count"] == before


def test_unreachable_server_is_exit_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "a").write_bytes(b"a")
    for argv in (["ls"], ["upload", str(tmp_path / "a")], ["rm", "x"], ["share", "x"]):
        code, _, err = run(capsys, *argv, "--url", url)
        assert code == 3, argv
        assert "cannot reach" in err


def test_version_and_help_say_what_to_type(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("spoolup ")
    for command in ["serve", "upload", "ls", "get", "rm", "share"]:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert "examples:" in text, command
        assert "environment:" in text, command
        assert "exit status:" in text, command
        assert f"spoolup {command}" in text.split("examples:")[1], command


# ---------------------------------------------------------------- real processes


def test_ctrl_c_stops_an_upload_with_a_resume_hint(server: RunningServer, tmp_path: Path) -> None:
    path = tmp_path / "slow.bin"
    path.write_bytes(os.urandom(90_000))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = (
        "import signal, sys, time, spoolup.commands.upload as u\n"
        # As in a terminal: a test run in the background inherits SIGINT ignored.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "real = u._file_chunks\n"
        "def slow(*a, **k):\n"
        "    for chunk in real(*a, **k):\n"
        "        print('SENDING', file=sys.stderr, flush=True)\n"
        "        time.sleep(60)\n"
        "        yield chunk\n"
        "u._file_chunks = slow\n"
        "from spoolup.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, "upload", str(path), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            assert "SENDING" in line, line
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130
    assert "Traceback" not in err
    assert "interrupted. 0 uploaded (0 B) of 1 file" in err
    assert "Run the same command again to resume" in err


def test_serve_prints_a_banner_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SPOOLUP_TOKEN": "banner-token", "SPOOLUP_MAX_FILE_SIZE": "3MB"}
    command = [sys.executable, "-m", "spoolup.cli", "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--storage", str(tmp_path / "data")], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while "is ready" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert f"open http://127.0.0.1:{port}/" in text
    assert str((tmp_path / "data").resolve()) in text
    assert "token    on" in text
    assert "files up to 3 MB" in text
    assert "spoolup serve: stopped" in text
    assert "Traceback" not in text


def test_serve_port_0_and_metrics_port_0_pick_free_ports_named_in_the_banner(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "spoolup.cli", "serve", "--port", "0", "--metrics-port", "0"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--storage", str(tmp_path / "data")], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while "stop     Ctrl-C" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        text = log.read_text()
        url = text.split("open ", 1)[1].split()[0]
        metrics_url = text.split("  metrics  ", 1)[1].split()[0]
        assert not url.endswith(":0/")
        assert metrics_url.startswith("http://127.0.0.1:")
        assert not metrics_url.endswith(":0/metrics")
        assert metrics_url != f"{url}metrics"
        assert httpx.get(url).status_code == 200
        assert "spoolup_uploads_started_total" in httpx.get(metrics_url).text
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_serve_says_which_port_is_taken(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--metrics-port" if flag == "--port" else "--port"
        command = [sys.executable, "-m", "spoolup.cli", "serve", "--storage", str(tmp_path)]
        done = subprocess.run(
            [*command, flag, str(port), other, "0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr
        == f"spoolup serve: cannot listen on 127.0.0.1:{port} ({flag}): address in use\n"
    )


def test_serve_refuses_one_port_for_both(capsys: pytest.CaptureFixture[str]) -> None:
    port = str(free_port())
    assert cli.main(["serve", "--port", port, "--metrics-port", port]) == 2
    assert capsys.readouterr().err == (
        f"spoolup serve: metrics_port must differ from port ({port}): "
        "/metrics is served on the main port without --metrics-port\n"
    )


def test_serve_refuses_storage_it_cannot_use(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    for storage, words in [
        (str(blocker / "sub"), "check that the folder"),
        ("s3://no-such-bucket/x", "AWS_ENDPOINT_URL"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "spoolup.cli", "serve", "--storage", storage],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 3, done.stderr
        assert f"cannot use the storage {storage}" in done.stderr
        assert words in done.stderr
        assert "Traceback" not in done.stderr


def test_compressed_files_are_typed_by_their_compression(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Every way upload sends a file (PUT, tus, an upload link) records the bytes' type.
    gz, xz, bz2 = tmp_path / "put.tar.gz", tmp_path / "tus.tar.xz", tmp_path / "link.tar.bz2"
    for path in (gz, xz, bz2):
        path.write_bytes(os.urandom(1000))
    code, out, err = run(capsys, "upload", str(gz), "--quiet")
    assert code == 0, err
    assert json.loads(out)["content_type"] == "application/gzip"
    code, out, err = run(capsys, "upload", str(xz), "--tus-threshold", "0", "--quiet")
    assert code == 0, err
    assert json.loads(out)["content_type"] == "application/x-xz"
    code, out, err = run(capsys, "share", "--upload", "--max-files", "1")
    assert code == 0, err
    code, out, err = run(capsys, "upload", str(bz2), "--url", out.strip(), "--quiet")
    assert code == 0, err
    with server.client(TOKEN) as client:  # a link's answer names no type: ask the owner's API
        (record,) = client.get("/api/files", params={"q": "link.tar.bz2"}).json()
        served = client.get(f"/api/files/{record['id']}")
    assert record["content_type"] == "application/x-bzip2"
    assert served.headers["content-type"] == "application/x-bzip2"
