"""The CLI against a hostile server: what it prints and writes stays the user's."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spoolup import cli

ESCAPES = "\x1b]0;owned\x07\x1b[2J"
RECORD = {
    "id": "a" * 32,
    "filename": f"..{ESCAPES}/../evil\r.txt",
    "size": 5,
    "created": "2026-01-01T00:00:00Z",
    "sha256": hashlib.sha256(b"hello").hexdigest(),
}


class _Hostile(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/api/files?q=broken"):
            self._send(200, json.dumps([{"size": "x"}, 7]).encode(), {})
        elif self.path.startswith("/api/files?"):
            self._send(200, json.dumps([RECORD]).encode(), {"Content-Type": "application/json"})
        elif self.path == f"/api/files/{RECORD['id']}":
            self._send(200, b"hello", {"ETag": f'"{RECORD["sha256"]}"'})
        else:
            error = json.dumps({"error": f"no{ESCAPES}"}).encode()
            self._send(404, error, {"Content-Type": "application/json"})


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("SPOOLUP_URL", url)
    monkeypatch.setenv("SPOOLUP_TOKEN", "t")
    monkeypatch.chdir(tmp_path)
    yield url
    server.shutdown()
    server.server_close()
    thread.join()


def test_ls_and_errors_print_no_terminal_escapes(
    hostile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["ls"]) == 0
    out, err = capsys.readouterr()
    assert "evil" in out
    assert "\x1b" not in out + err
    assert "\r" not in out + err
    assert cli.main(["get", "b" * 32]) != 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err
    assert "\x07" not in out + err


def test_get_of_a_traversal_name_stays_in_the_folder(
    hostile: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    assert cli.main(["get", str(RECORD["filename"]), "-o", "in"]) == 0
    capsys.readouterr()
    assert [p.read_bytes() for p in tmp_path.parent.rglob("*evil*")] == [b"hello"]
    assert [p.parent for p in tmp_path.parent.rglob("*evil*")] == [tmp_path / "in"]


def test_a_malformed_answer_is_a_clear_failure_not_a_traceback(
    hostile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["ls", "broken"]) == 3
    _, err = capsys.readouterr()
    assert "answer" in err
    assert cli.main(["get", "broken"]) == 3
    _, err = capsys.readouterr()
    assert "answer" in err
