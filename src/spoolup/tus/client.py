"""The tus client behind ``spoolup upload``: create, resume with HEAD, PATCH in chunks.

An interrupted upload is resumed when the same file (same path, size and modification
time) is sent to the same server again: the upload URL is kept in a small JSON file in
the user's cache folder (``$XDG_CACHE_HOME/spoolup/tus-uploads.json``) until the upload
completes. Each chunk carries an ``Upload-Checksum`` (sha256), so a chunk damaged on
the way is refused by the server (460) and sent again. The whole file's sha256 is
computed on the way (the bytes the server already had are read and hashed locally), and
the file record a spoolup server names in ``Spoolup-File-Record`` is returned, so the
caller can check one against the other.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

import httpx

__all__ = ["TusClientError", "TusUploadResult", "default_state_file", "tus_upload"]

TUS_VERSION = "1.0.0"
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
_MAX_STATE_ENTRIES = 200
_READ = 1024 * 1024
# Progress is reported at least this often (bytes) while a chunk is on its way.
_PROGRESS_STEP = 256 * 1024


class TusClientError(Exception):
    """The server refused the upload, or could not be reached after every retry.

    ``status`` is the HTTP status of the refusal, or ``None`` when there was no answer.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class TusUploadResult:
    """A finished upload.

    Attributes:
        url: the upload's URL.
        size: bytes of the file.
        resumed_from: the server's offset when this run began (0: a new upload).
        file_id: the file id a spoolup server gave (``Spoolup-File-Id``), if any.
        record: the file record it sent (``Spoolup-File-Record``), if any.
        sha256: hex digest of the local file, as read while sending it.
    """

    url: str
    size: int
    resumed_from: int
    file_id: str | None
    record: dict[str, Any] | None = None
    sha256: str = ""


class _Hasher:
    """The sha256 of a file, fed in order even when sending starts at an offset."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._hash = hashlib.sha256()
        self.done = 0

    def cover(self, offset: int, chunk: bytes) -> None:
        """Take ``chunk`` (read at ``offset``), first reading any bytes not yet hashed."""
        if offset > self.done:
            self._file.seek(self.done)
            while self.done < offset:
                gap = self._file.read(min(_READ, offset - self.done))
                if not gap:
                    break
                self._hash.update(gap)
                self.done += len(gap)
        if offset <= self.done < offset + len(chunk):
            self._hash.update(memoryview(chunk)[self.done - offset :])
            self.done = offset + len(chunk)

    def hexdigest(self, size: int) -> str:
        """The digest of the first ``size`` bytes (reading what was never sent)."""
        self.cover(size, b"")
        return self._hash.hexdigest()


def default_state_file() -> Path:
    """Where upload URLs are kept for resuming: the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spoolup" / "tus-uploads.json"


class _State:
    """The resume file: fingerprint -> upload URL, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        entry = self._read().get(key)
        return entry.get("url") if isinstance(entry, dict) else None

    def put(self, key: str, url: str | None) -> None:
        data = self._read()
        if url is None:
            data.pop(key, None)
        else:
            data[key] = {"url": url, "saved": time.time()}
            if len(data) > _MAX_STATE_ENTRIES:  # keep the newest
                newest = sorted(data.items(), key=lambda kv: -float(kv[1].get("saved", 0)))
                data = dict(newest[:_MAX_STATE_ENTRIES])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)


def _fingerprint(endpoint: str, path: Path) -> str:
    st = path.stat()
    return f"{endpoint}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _metadata(pairs: Mapping[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def tus_upload(
    path: str | os.PathLike[str],
    endpoint: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    token: str | None = None,
    content_type: str | None = None,
    progress: Callable[[int, int], object] | None = None,
    state_file: Path | None = None,
    retries: int = 5,
    retry_delay: float = 1.0,
    client: httpx.Client | None = None,
) -> TusUploadResult:
    """Upload the file at ``path`` to the tus collection ``endpoint`` (``.../tus/``).

    Resumes an earlier interrupted upload of the same file to the same endpoint.
    ``progress(sent, total)`` is called with the server's offset when the upload
    starts or resumes, as each chunk goes out (every 256 KiB) and after every chunk.
    A chunk the server did not take (a dropped connection, a 5xx/423 answer, an
    offset mismatch) is sent again from the offset the server gives; after
    ``retries`` tries in a row that make no progress, ``retry_delay`` seconds apart,
    the upload fails.
    Raises :class:`TusClientError` when the server refuses the upload or cannot be
    reached. Holds at most one chunk in memory.
    """
    if chunk_size < 1:
        msg = f"chunk_size must be at least 1, not {chunk_size}"
        raise ValueError(msg)
    file_path = Path(path)
    size = file_path.stat().st_size
    state = _State(state_file or default_state_file())
    key = _fingerprint(endpoint, file_path)
    headers = {"Tus-Resumable": TUS_VERSION}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))
    try:
        session = _Session(http, headers, retries, retry_delay)
        url = state.get(key)
        offset = session.offset_of(url, size) if url else None
        if url is None or offset is None:
            meta = {"filename": file_path.name}
            if content_type:
                meta["filetype"] = content_type
            url = session.create(endpoint, size, _metadata(meta))
            offset = 0
            state.put(key, url)
        resumed_from = offset
        file_id: str | None = None
        record: dict[str, Any] | None = None
        last = -1

        def report(sent: int, total: int) -> None:
            nonlocal last
            if progress is not None and sent != last:
                last = sent
                progress(sent, total)

        report(offset, size)
        with file_path.open("rb") as f:
            hasher = _Hasher(f)
            stalled = 0
            while True:
                f.seek(offset)
                chunk = f.read(chunk_size) if offset < size else b""
                hasher.cover(offset, chunk)
                start = offset

                def sending(sent: int, start: int = start) -> None:
                    report(start + sent, size)

                answer = session.patch(url, offset, chunk, sending)
                if answer is not None:
                    offset, file_id, record = answer
                    report(offset, size)
                    # Done once a PATCH reaching the end is answered; learning the
                    # offset from HEAD is not enough: an empty PATCH then gets the
                    # record (and has a spoolup server finish a completion that failed
                    # midway).
                    if offset >= size:
                        break
                    stalled = 0
                    continue
                # Not taken (offset mismatch, damaged chunk, dropped connection, server
                # error): ask where the server is and go on from there.
                server_offset = session.offset_now(url)
                stalled = stalled + 1 if server_offset == offset else 0
                if stalled > retries:
                    msg = f"PATCH {url} kept failing"
                    raise TusClientError(msg)
                if stalled:
                    time.sleep(retry_delay)
                offset = server_offset
                report(offset, size)
            digest = hasher.hexdigest(size)
        state.put(key, None)
        return TusUploadResult(url, size, resumed_from, file_id, record, digest)
    finally:
        if own:
            http.close()


class _Session:
    def __init__(
        self, http: httpx.Client, headers: dict[str, str], retries: int, delay: float
    ) -> None:
        self.http = http
        self.headers = headers
        self.retries = retries
        self.delay = delay

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        extra = kw.pop("headers", {})
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.delay)
            try:
                response = self.http.request(method, url, headers={**self.headers, **extra}, **kw)
            except httpx.TransportError as exc:
                last = exc
                continue
            if response.status_code == 423 or response.status_code >= 500:
                last = TusClientError(f"{method} {url}: {response.status_code}")
                continue
            return response
        msg = f"{method} {url} failed after {self.retries + 1} tries: {last}"
        raise TusClientError(msg)

    def offset_of(self, url: str, size: int) -> int | None:
        """The server's offset for ``url``, or ``None`` if it is gone or not this file."""
        response = self._request("HEAD", url)
        if response.status_code != 200:
            return None
        if response.headers.get("upload-length") != str(size):
            return None
        with contextlib.suppress(KeyError, ValueError):
            return int(response.headers["upload-offset"])
        return None

    def create(self, endpoint: str, size: int, metadata: str) -> str:
        response = self._request(
            "POST", endpoint, headers={"Upload-Length": str(size), "Upload-Metadata": metadata}
        )
        if response.status_code != 201 or "location" not in response.headers:
            raise _refused("creating the upload", response)
        return urljoin(endpoint, response.headers["location"])

    def offset_now(self, url: str) -> int:
        """The server's offset for ``url``; :class:`TusClientError` if it cannot say."""
        response = self._request("HEAD", url)
        if response.status_code != 200:
            raise _refused("resuming", response)
        try:
            return int(response.headers["upload-offset"])
        except (KeyError, ValueError):
            raise _refused("resuming", response) from None

    def patch(
        self, url: str, offset: int, chunk: bytes, sending: Callable[[int], object]
    ) -> tuple[int, str | None, dict[str, Any] | None] | None:
        """Send ``chunk`` at ``offset`` once: the new offset, file id and record.

        ``None`` when the server did not take it for a reason worth retrying (an
        offset mismatch, a damaged chunk, a dropped connection, 423 or 5xx); the
        caller asks for the offset and retries. Any other refusal raises.
        """
        digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode()

        def body() -> Iterator[bytes]:
            view = memoryview(chunk)
            for start in range(0, len(chunk), _PROGRESS_STEP):
                yield bytes(view[start : start + _PROGRESS_STEP])
                sending(min(len(chunk), start + _PROGRESS_STEP))

        headers = {
            **self.headers,
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(chunk)),
            "Upload-Offset": str(offset),
            "Upload-Checksum": f"sha256 {digest}",
        }
        try:
            response = self.http.request("PATCH", url, headers=headers, content=body())
        except httpx.TransportError:
            return None
        status = response.status_code
        if status == 204:
            return (
                int(response.headers["upload-offset"]),
                response.headers.get("spoolup-file-id"),
                _record(response.headers.get("spoolup-file-record")),
            )
        if status in (409, 423, 460) or status >= 500:
            return None
        raise _refused("sending a chunk", response)


def _record(header: str | None) -> dict[str, Any] | None:
    """The file record from ``Spoolup-File-Record`` (base64 of JSON), if it is one."""
    if not header:
        return None
    try:
        record = json.loads(base64.b64decode(header, validate=True))
    except (ValueError, binascii.Error):
        return None
    return record if isinstance(record, dict) else None


def _refused(what: str, response: httpx.Response) -> TusClientError:
    try:
        detail = response.json().get("error", "")
    except (ValueError, AttributeError):
        detail = response.text[:200]
    message = f"{what} failed: {response.status_code} {detail}".strip()
    return TusClientError(message, response.status_code)
