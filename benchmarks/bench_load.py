"""Load: ``spoolup serve`` under many uploads at once, many slow clients, one huge PATCH.

Three measurements, each against a fresh ``spoolup serve`` child process on 127.0.0.1
storing to a local folder (its defaults: fsync at commit, sha256 while receiving):

- **concurrent uploads**: N uploads of M MB at once (half multipart ``POST
  /api/files``, half tus: a creation then one PATCH), against one upload alone. Every
  upload must succeed and every stored sha256 must match the bytes sent. Reported:
  failures, aggregate MB/s against the one upload's MB/s (the ratio), and the
  server's peak RSS (``VmHWM``; the bound is 300 MiB).
- **slow clients**: 2,000 connections each holding half a request head, while
  ``/healthz`` is asked 200 times in a row: its p50 and p99 against the same with no
  slow connection (the bound is p99 < 1 s).
- **one large tus PATCH**: a G GiB upload in one PATCH; the server's RSS growth over
  its idle RSS (the bound is 64 MiB).

The client is raw HTTP/1.1 on asyncio streams (one connection per upload), so it costs
little CPU beside the server's. ``python -m benchmarks load`` (100 x 50 MB, a 4 GiB
PATCH) or ``--quick`` (8 x 2 MB, 200 connections, 64 MiB).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.report import Table
from benchmarks.serving import free_port, peak_rss, stop, wait_for_port

TITLE = "Load: many uploads at once, slow clients, one large tus PATCH"
PACKAGES = ("spoolup", "uvicorn", "httptools", "starlette")

MB = 1000 * 1000
MiB = 1024 * 1024
_CHUNK = 256 * 1024
_BOUNDARY = "benchloadboundary0123456789"


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is."""

    uploads: int
    upload_size: int
    slow: int
    patch_size: int


FULL = Sizes(uploads=100, upload_size=50 * MB, slow=2000, patch_size=4096 * MiB)
QUICK = Sizes(uploads=8, upload_size=2 * MB, slow=200, patch_size=64 * MiB)


@dataclass
class Server:
    """One running ``spoolup serve``."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def rss(self) -> int:
        """Resident memory now."""
        return int(psutil.Process(self.process.pid).memory_info().rss)


@contextmanager
def server(*args: str) -> Iterator[Server]:
    """``spoolup serve`` on a free port over a fresh folder, stopped at the end."""
    folder = Path(tempfile.mkdtemp(prefix="spoolup-bench-load-"))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "spoolup.cli",
        "serve",
        "--port",
        str(port),
        "--storage",
        str(folder / "data"),
        "--log-level",
        "warning",
        "--no-access-log",
        *args,
    ]
    env = {**os.environ, "TMPDIR": str(folder)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process)
        yield Server(process, port)
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- a raw HTTP client


async def _request(
    port: int, head: str, body: Iterator[bytes] | None = None, *, length: int = 0
) -> tuple[int, dict[str, str], bytes]:
    """Send one request (``head`` without its blank line) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"{head}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        for chunk in body or ():
            writer.write(chunk)
            await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in {b"\r\n", b""}:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, answer
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


def _chunks(data: memoryview, head: bytes = b"", tail: bytes = b"") -> Iterator[bytes]:
    if head:
        yield head
    for start in range(0, len(data), _CHUNK):
        yield bytes(data[start : start + _CHUNK])
    if tail:
        yield tail


async def upload_multipart(port: int, data: memoryview, name: str) -> str:
    """POST one file as multipart; the stored sha256."""
    head = (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{_BOUNDARY}--\r\n".encode()
    status, _, answer = await _request(
        port,
        f"POST /api/files HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={_BOUNDARY}",
        _chunks(data, head, tail),
        length=len(head) + len(data) + len(tail),
    )
    if status != 201:
        msg = f"multipart upload answered {status}: {answer[:200]!r}"
        raise RuntimeError(msg)
    sha256: str = json.loads(answer)[0]["sha256"]
    return sha256


async def upload_tus(port: int, data: memoryview) -> str:
    """Create a tus upload and send it in one PATCH; the stored sha256."""
    status, headers, answer = await _request(
        port, f"POST /tus/ HTTP/1.1\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {len(data)}"
    )
    if status != 201:
        msg = f"tus creation answered {status}: {answer[:200]!r}"
        raise RuntimeError(msg)
    location = headers["location"].removeprefix(f"http://127.0.0.1:{port}")
    status, headers, answer = await _request(
        port,
        f"PATCH {location} HTTP/1.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        "Content-Type: application/offset+octet-stream",
        _chunks(data),
        length=len(data),
    )
    if status != 204:
        msg = f"tus PATCH answered {status}: {answer[:200]!r}"
        raise RuntimeError(msg)
    record = json.loads(base64.b64decode(headers["spoolup-file-record"]))
    sha256: str = record["sha256"]
    return sha256


# ---------------------------------------------------------------- measurements


def _payloads(size: int, count: int) -> list[tuple[memoryview, str]]:
    out = []
    for _ in range(count):
        data = os.urandom(size)
        out.append((memoryview(data), hashlib.sha256(data).hexdigest()))
    return out


async def _concurrent(port: int, payloads: list[tuple[memoryview, str]], n: int) -> int:
    """``n`` uploads at once, alternating multipart and tus; how many failed."""

    async def one(i: int) -> bool:
        data, expected = payloads[i % len(payloads)]
        try:
            if i % 2 == 0:
                got = await upload_multipart(port, data, f"u{i}.bin")
            else:
                got = await upload_tus(port, data)
        except (OSError, RuntimeError, KeyError, ValueError):
            return False
        return got == expected

    results = await asyncio.gather(*(one(i) for i in range(n)))
    return results.count(False)


def measure_uploads(sizes: Sizes, table: Table) -> None:
    """One upload alone, then ``sizes.uploads`` at once."""
    payloads = _payloads(sizes.upload_size, 4)
    with server() as alone:
        asyncio.run(_concurrent(alone.port, payloads, 1))  # warm-up
        started = time.perf_counter()
        failed_alone = asyncio.run(_concurrent(alone.port, payloads, 1))
        one_rate = sizes.upload_size / MB / (time.perf_counter() - started)
    with server() as many:
        started = time.perf_counter()
        failed = asyncio.run(_concurrent(many.port, payloads, sizes.uploads))
        elapsed = time.perf_counter() - started
        peak = peak_rss(many.process.pid)
    rate = sizes.uploads * sizes.upload_size / MB / elapsed
    table.notes.append(
        f"bound: peak server RSS < 300 MiB: {'met' if peak < 300 * MiB else 'NOT met'} "
        f"({peak / MiB:.0f} MiB, {(peak - 60 * MiB) / MiB / sizes.uploads:.1f} MiB per "
        "upload over a 60 MiB idle server)"
    )
    table.add(
        "1 upload alone",
        f"{sizes.upload_size // MB} MB",
        str(failed_alone),
        f"{one_rate:.0f}",
        "1.00",
        "",
    )
    table.add(
        f"{sizes.uploads} at once (multipart + tus)",
        f"{sizes.uploads} x {sizes.upload_size // MB} MB",
        str(failed),
        f"{rate:.0f}",
        f"{rate / one_rate:.2f}",
        f"{peak / MiB:.0f} MiB",
    )


def _raise_fd_limit(count: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return min(count, soft - 256)


async def _health_times(port: int, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        status, _, _ = await _request(port, "GET /healthz HTTP/1.1")
        times.append(time.perf_counter() - started)
        if status != 200:
            msg = f"/healthz answered {status}"
            raise RuntimeError(msg)
    return sorted(times)


async def _slow_clients(port: int, count: int) -> tuple[list[float], list[float]]:
    idle = await _health_times(port, 200)
    held = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        held.append(writer)
    await asyncio.sleep(0.5)
    try:
        loaded = await _health_times(port, 200)
    finally:
        for writer in held:
            writer.close()
    return idle, loaded


def measure_slow_clients(sizes: Sizes, table: Table) -> None:
    """``/healthz`` with no slow client, then with ``sizes.slow`` of them."""
    count = _raise_fd_limit(sizes.slow)
    with server() as running:
        idle, loaded = asyncio.run(_slow_clients(running.port, count))

    def p(times: list[float], q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))] * 1000

    verdict = "met" if p(loaded, 0.99) < 1000 else "NOT met"
    table.notes.append(f"bound: /healthz p99 < 1 s under the slow connections: {verdict}")
    table.add("no slow connection", f"{p(idle, 0.5):.1f}", f"{p(idle, 0.99):.1f}", "1.0")
    table.add(
        f"{count} slow connections",
        f"{p(loaded, 0.5):.1f}",
        f"{p(loaded, 0.99):.1f}",
        f"{p(loaded, 0.99) / p(idle, 0.99):.1f}",
    )


def measure_large_patch(sizes: Sizes, table: Table) -> None:
    """One tus upload of ``sizes.patch_size`` in a single PATCH; RSS growth over idle."""
    data = os.urandom(64 * MiB)
    expected = hashlib.sha256()
    repeats = sizes.patch_size // len(data)
    for _ in range(repeats):
        expected.update(data)

    def body() -> Iterator[bytes]:
        view = memoryview(data)
        for _ in range(repeats):
            yield from _chunks(view)

    async def send(port: int) -> tuple[str, float]:
        size = repeats * len(data)
        status, headers, _ = await _request(
            port, f"POST /tus/ HTTP/1.1\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {size}"
        )
        location = headers["location"].removeprefix(f"http://127.0.0.1:{port}")
        started = time.perf_counter()
        status, headers, answer = await _request(
            port,
            f"PATCH {location} HTTP/1.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            "Content-Type: application/offset+octet-stream",
            body(),
            length=size,
        )
        elapsed = time.perf_counter() - started
        if status != 204:
            msg = f"the PATCH answered {status}: {answer[:200]!r}"
            raise RuntimeError(msg)
        record = json.loads(base64.b64decode(headers["spoolup-file-record"]))
        return str(record["sha256"]), elapsed

    with server() as running:
        asyncio.run(upload_tus(running.port, memoryview(os.urandom(MiB))))  # warm-up
        idle = running.rss
        sha256, elapsed = asyncio.run(send(running.port))
        growth = peak_rss(running.process.pid) - idle
    verdict = "met" if growth < 64 * MiB else "NOT met"
    table.notes.append(f"bound: RSS growth < 64 MiB: {verdict}")
    table.add(
        f"{repeats * len(data) // MiB} MiB in one PATCH",
        "yes" if sha256 == expected.hexdigest() else "NO",
        f"{repeats * len(data) / MB / elapsed:.0f}",
        f"{idle / MiB:.0f} MiB",
        f"{growth / MiB:.1f} MiB",
    )


def run(quick: bool) -> list[Table]:
    """Run the three measurements; return their tables."""
    sizes = QUICK if quick else FULL
    load_before = os.getloadavg()[0]
    uploads = Table(
        "Concurrent uploads to one server (half multipart, half tus)",
        ["run", "bytes", "failed", "MB/s", "vs one alone", "peak server RSS"],
    )
    measure_uploads(sizes, uploads)
    slow = Table(
        "/healthz while slow clients hold half a request head each (200 requests)",
        ["load", "p50 ms", "p99 ms", "p99 vs idle"],
    )
    measure_slow_clients(sizes, slow)
    patch = Table(
        "One large tus PATCH",
        ["upload", "sha256 right", "MB/s", "idle server RSS", "RSS growth"],
    )
    measure_large_patch(sizes, patch)
    # Other work on the machine changes every figure here: say how busy it was.
    uploads.notes.append(
        f"machine load average (1 min) before: {load_before:.1f}, after: "
        f"{os.getloadavg()[0]:.1f}, on {os.cpu_count()} cores"
    )
    return [uploads, slow, patch]
