"""Regenerate the captured multipart bodies in ``tests/data/captures/``.

Run by hand, never by the tests (``.venv/bin/python tests/data/capture.py``). A small
recording server on 127.0.0.1 saves the ``Content-Type`` and the body of each request;
real clients (requests, httpx, urllib3, aiohttp, the ``curl`` CLI and a form submitted
by headless Chromium) post known parts to it. For each client it writes:

- ``<client>.body``: the bytes exactly as received (chunked transfer coding removed);
- ``<client>.json``: the request's content type and the expected parts, in order, each
  with ``name``, ``filename``, ``raw_filename``, ``content_type``, ``charset``, ``size``
  and ``sha256`` of its data.

The expected parts come from what was sent, not from parsing the body; the only
client-specific knowledge is how each client writes headers (aiohttp percent-encodes
file names and labels text fields ``text/plain; charset=utf-8``; browsers send textarea
line breaks as CRLF). Before writing, every body is cross-checked with Werkzeug's
decoder, an independent parser, so a wrong expectation fails here and not in the tests.
The file names are already safe base names, so ``filename`` equals ``raw_filename``,
except for the browser's empty file input (``filename=""``), which spoolup names
``upload`` (documented in ``spoolup.multipart``).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.browser import CHROMIUM

OUT = Path(__file__).resolve().parent / "captures"


def blob(seed: str, size: int) -> bytes:
    """Deterministic bytes that look random, led by near-miss delimiters and bare CR/LF."""
    tricky = b"\r\n--\r\n-\r--\n\r\n--not-the-boundary\r\n\r\n"
    out = bytearray(tricky)
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@dataclass(frozen=True)
class Part:
    """One part a client sends, and what a parser must report for it."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None
    charset: str | None = None
    safe_filename: str | None = None

    def expected(self) -> dict[str, Any]:
        """The part as ``<client>.json`` records it."""
        return {
            "name": self.name,
            "filename": self.safe_filename or self.filename,
            "raw_filename": self.filename,
            "content_type": self.content_type,
            "charset": self.charset,
            "size": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


UNICODE_NAME = "résumé ☃ 2024.bin"
NOTES = b"first line\r\nsecond line\nthird line\r\n\r\n-- signature\r\n"

# The parts every programmatic client sends (fields first, then files, as each
# client orders them anyway).
FIELDS = [
    Part("title", "Quarterly report ✓ — 2024".encode()),
    Part("tag", b"alpha"),
    Part("tag", b"beta"),
    Part("empty", b""),
]
FILES = [
    Part("upload", blob("upload", 3000), UNICODE_NAME, "application/octet-stream"),
    Part("notes", NOTES, "notes.txt", "text/plain"),
    Part("empty_file", b"", "empty.dat", "application/octet-stream"),
]


# -- the recording server ---------------------------------------------------------------

FORM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>capture</title></head>
<body>
<form id="form" method="post" action="/chromium" enctype="multipart/form-data">
  <input type="text" name="title">
  <input type="text" name="tag" value="alpha">
  <input type="text" name="tag" value="beta">
  <textarea name="comment"></textarea>
  <input type="file" name="upload">
  <input type="file" name="attachments" multiple>
  <input type="file" name="nothing">
  <button id="send" type="submit">send</button>
</form>
</body></html>
"""


class Recorder(http.server.BaseHTTPRequestHandler):
    """Saves the content type and the body of every POST into ``server.records``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def do_GET(self) -> None:
        """Serve the form page for the browser."""
        page = FORM_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def do_POST(self) -> None:
        """Record the request, answer 200."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        records: dict[str, tuple[str, bytes]] = self.server.records  # type: ignore[attr-defined]
        records[self.path.strip("/")] = (self.headers["Content-Type"], body)
        answer = b"<!doctype html><title>ok</title>ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline()


@contextmanager
def recording_server() -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
    """Start the recorder on a free port of 127.0.0.1; yield its base URL and records."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    records: dict[str, tuple[str, bytes]] = {}
    server.records = records  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", records
    finally:
        server.shutdown()
        server.server_close()


# -- the clients ------------------------------------------------------------------------


def send_requests(url: str) -> list[Part]:
    """requests: ``data=`` for fields, ``files=`` for files."""
    import requests

    data = [(p.name, p.data) for p in FIELDS]
    files = [(p.name, (p.filename, p.data, p.content_type or "")) for p in FILES]
    requests.post(url, data=data, files=files, timeout=10).raise_for_status()
    return FIELDS + FILES


def send_httpx(url: str) -> list[Part]:
    """httpx: ``data=`` for fields, ``files=`` for files."""
    import httpx

    data = {"title": FIELDS[0].data.decode(), "tag": ["alpha", "beta"], "empty": ""}
    files = [(p.name, (p.filename, p.data, p.content_type)) for p in FILES]
    httpx.post(url, data=data, files=files, timeout=10).raise_for_status()
    return FIELDS + FILES


def send_urllib3(url: str) -> list[Part]:
    """urllib3: ``fields=`` with (filename, data, type) tuples for files."""
    import urllib3

    fields: list[tuple[str, Any]] = [(p.name, p.data.decode()) for p in FIELDS]
    fields += [(p.name, (p.filename, p.data, p.content_type)) for p in FILES]
    response = urllib3.request("POST", url, fields=fields, timeout=10)
    assert response.status == 200, response.status
    return FIELDS + FILES


def send_aiohttp(url: str) -> list[Part]:
    """aiohttp's client: ``FormData`` with ``add_field``."""
    import aiohttp

    async def post() -> None:
        form = aiohttp.FormData()
        for p in FIELDS:
            form.add_field(p.name, p.data.decode())
        for p in FILES:
            form.add_field(p.name, p.data, filename=p.filename, content_type=p.content_type)
        async with aiohttp.ClientSession() as session, session.post(url, data=form) as resp:
            resp.raise_for_status()

    asyncio.run(post())
    # aiohttp labels text fields and percent-encodes file names (quote_fields=True).
    fields = [replace(p, content_type="text/plain", charset="utf-8") for p in FIELDS]
    files = [replace(p, filename=urllib.parse.quote(p.filename or "", safe="")) for p in FILES]
    return fields + files


def send_curl(url: str) -> list[Part]:
    """The ``curl`` CLI: ``-F name=value`` and ``-F name=@file;type=...``."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["curl", "-sS", "--fail", "-o", "/dev/null", "-H", "Expect:"]
        args += ["-F", f"{FIELDS[0].name}={FIELDS[0].data.decode()}"]
        args += ["-F", "tag=alpha", "-F", "tag=beta", "-F", "empty="]
        for p in FILES:
            path = Path(tmp) / (p.filename or "")
            path.write_bytes(p.data)
            args += ["-F", f"{p.name}=@{path};type={p.content_type}"]
        subprocess.run([*args, url], check=True, timeout=30)
    return FIELDS + FILES


def send_chromium(url: str) -> list[Part]:
    """Headless Chromium submits a plain HTML form (driven by Playwright)."""
    from playwright.sync_api import FilePayload

    from tests.browser import chromium

    def payload(part: Part) -> FilePayload:
        return {
            "name": part.filename or "",
            "mimeType": part.content_type or "",
            "buffer": part.data,
        }

    title = FIELDS[0].data.decode()
    # Typed with mixed line breaks; the browser submits every one as CRLF.
    comment_typed = "line one\nline two\r\nline three\n"
    comment_sent = b"line one\r\nline two\r\nline three\r\n"
    upload = FILES[0]
    attachments = [
        Part("attachments", NOTES, "notes.txt", "text/plain"),
        Part("attachments", blob("photo", 1500), "ünïcödé photo.png", "image/png"),
    ]
    with chromium() as browser:
        page = browser.new_page()
        page.goto(url.rsplit("/", 1)[0] + "/form")
        page.fill("input[name=title]", title)
        page.fill("textarea[name=comment]", comment_typed)
        page.set_input_files("input[name=upload]", payload(upload))
        page.set_input_files("input[name=attachments]", [payload(a) for a in attachments])
        with page.expect_navigation():
            page.click("#send")
    return [
        FIELDS[0],
        FIELDS[1],
        FIELDS[2],
        Part("comment", comment_sent),
        upload,
        *attachments,
        # A file input left empty: the browser still sends a part, with filename="".
        Part("nothing", b"", "", "application/octet-stream", safe_filename="upload"),
    ]


CLIENTS = {
    "requests": send_requests,
    "httpx": send_httpx,
    "urllib3": send_urllib3,
    "aiohttp": send_aiohttp,
    "curl": send_curl,
    "chromium": send_chromium,
}


def client_version(client: str) -> str:
    """The version of the client that produced a capture."""
    if client in ("curl", "chromium"):
        program = "curl" if client == "curl" else CHROMIUM
        out = subprocess.run([program, "--version"], capture_output=True, text=True, check=True)
        first = out.stdout.strip().splitlines()[0]
        return first.split()[1] if client == "curl" else first
    from importlib.metadata import version

    return version(client)


def cross_check(content_type: str, body: bytes, parts: list[Part]) -> None:
    """Fail if Werkzeug's decoder sees anything other than the expected parts."""
    from werkzeug.datastructures import Headers
    from werkzeug.http import parse_options_header
    from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder

    boundary = parse_options_header(content_type)[1]["boundary"].encode()
    decoder = MultipartDecoder(boundary)
    decoder.receive_data(body)
    decoder.receive_data(None)
    seen: list[dict[str, Any]] = []
    data = bytearray()
    headers = Headers()
    while not isinstance(event := decoder.next_event(), Epilogue):
        if isinstance(event, Field | File):
            headers = event.headers
            ctype, options = parse_options_header(headers.get("content-type"))
            seen.append(
                {
                    "name": event.name,
                    "filename": event.filename if isinstance(event, File) else None,
                    "content_type": ctype or None,
                    "charset": options.get("charset"),
                }
            )
            data.clear()
        elif isinstance(event, Data):
            data += event.data
            if not event.more_data:
                seen[-1]["raw_filename"] = seen[-1].pop("filename")
                seen[-1]["size"] = len(data)
                seen[-1]["sha256"] = hashlib.sha256(data).hexdigest()
    want = [p.expected() for p in parts]
    for part in want:
        del part["filename"]  # the safe name is spoolup's, not werkzeug's
    if seen != want:
        raise AssertionError(f"werkzeug sees\n{seen}\nexpected\n{want}")


def main(names: list[str]) -> None:
    """Capture the named clients (all of them when none is named)."""
    OUT.mkdir(exist_ok=True)
    with recording_server() as (base, records):
        for client in names or list(CLIENTS):
            parts = CLIENTS[client](f"{base}/{client}")
            content_type, body = records[client]
            cross_check(content_type, body, parts)
            (OUT / f"{client}.body").write_bytes(body)
            record = {
                "client": client,
                "version": client_version(client),
                "content_type": content_type,
                "body_size": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "parts": [p.expected() for p in parts],
            }
            text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
            (OUT / f"{client}.json").write_text(text, encoding="utf-8")
            print(f"{client}: {len(body)} bytes, {len(parts)} parts")


if __name__ == "__main__":
    main(sys.argv[1:])
