"""Memory of one ``spoolup serve`` on S3 while many multipart POSTs stream into it.

One SeaweedFS (``weed mini``) and one server; ``UPLOADS`` concurrent POSTs of ``SIZE``
bytes to ``/api/files`` (streamed straight into S3 multipart uploads), then one alone.
Measured: the server's RSS idle (after a warm-up) and at its peak (``VmHWM``), the
growth per upload in flight, and MB/s. Then ``STALLED`` PUTs that send 512 KiB of a
64 MiB body and stop (slowloris): the server's RSS growth per stalled client. The
focused form of the cluster benchmark's memory column, for the part buffer budget
(``spoolup._io.PART_BUDGET``).

Side by side in the same run: with ``SPOOLUP_BENCH_BASELINE=<folder>`` (the ``src``
folder of another checkout, e.g. ``git archive <commit> src | tar -x -C /tmp/base``), a
server running that code is measured first, on the same SeaweedFS and the same uploads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from benchmarks.bench_cluster import _upload_all, pid_of, rss_now
from benchmarks.report import Table
from benchmarks.serving import peak_rss

if TYPE_CHECKING:
    from tests.seaweed import Seaweed

TITLE = "Memory of streamed S3 POSTs on one server"
PACKAGES = ("uvicorn", "boto3")

MiB = 1024 * 1024
UPLOADS, SIZE = 32, 64 * MiB
QUICK_UPLOADS, QUICK_SIZE = 4, 9 * MiB
STALLED, QUICK_STALLED = 32, 4
STALLED_SENT = 512 * 1024  # past the body batches on the way, into the storage writer


@dataclass
class Run:
    label: str
    idle: int
    peak: int
    seconds: float
    alone_seconds: float
    uploads: int
    size: int
    stalled: int
    stalled_growth: int


def measure(label: str, folder: Path, store: Seaweed, baseline: str | None, quick: bool) -> Run:
    """One server (running the code in ``baseline``, if given) under the uploads."""
    from tests.cluster.servers import SpoolupServer

    uploads, size = (QUICK_UPLOADS, QUICK_SIZE) if quick else (UPLOADS, SIZE)
    server = SpoolupServer(folder, store, label.split(maxsplit=1)[0])
    if baseline is not None:
        server.env["PYTHONPATH"] = baseline
    server.start()
    try:
        url = server.url
        asyncio.run(_upload_all(url, 2, MiB))  # warm up every path
        time.sleep(1.0)  # let the warm-up's threads and buffers settle
        idle = rss_now(pid_of(server))
        seconds, _, ids = asyncio.run(_upload_all(url, uploads, size))
        peak = peak_rss(pid_of(server))
        alone, _, alone_ids = asyncio.run(_upload_all(url, 1, size))
        for file_id in ids + alone_ids:
            httpx.delete(f"{url}/api/files/{file_id}", timeout=60)
        stalled = QUICK_STALLED if quick else STALLED
        stalled_growth = _stalled_growth(url, pid_of(server), stalled)
    finally:
        server.stop()
    return Run(label, idle, peak, seconds, alone, uploads, size, stalled, stalled_growth)


def _stalled_growth(url: str, pid: int, clients: int) -> int:
    """RSS growth of the server while ``clients`` PUTs have sent a little and stopped."""
    port = int(url.rsplit(":", 1)[1])
    before = rss_now(pid)
    head = (
        f"PUT /api/files/stalled.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {SIZE}\r\n\r\n"
    ).encode()
    held: list[socket.socket] = []
    try:
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", port))
            held.append(sock)
            sock.sendall(head + b"s" * STALLED_SENT)
        # Until every one took its part buffer (the gauge counts them, filled or not).
        deadline = time.monotonic() + 120
        while _part_buffer_bytes(url) < clients * 8 * MiB and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the last bytes copied in
        return rss_now(pid) - before
    finally:
        for sock in held:
            sock.close()


def _part_buffer_bytes(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=60).text.splitlines():
        if line.startswith("spoolup_part_buffer_bytes "):
            return float(line.split()[1])
    return 0.0


def run(quick: bool) -> list[Table]:
    """Measure the baseline's server (if one is given), then this checkout's."""
    from tests.seaweed import start_seaweed

    baseline = os.environ.get("SPOOLUP_BENCH_BASELINE")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-s3-memory-") as tmp:
        folder = Path(tmp)
        store = start_seaweed(folder / "seaweed")
        try:
            if baseline is not None:
                runs.append(
                    measure(
                        "baseline (SPOOLUP_BENCH_BASELINE)", folder / "a", store, baseline, quick
                    )
                )
            runs.append(measure("this checkout", folder / "b", store, None, quick))
        finally:
            store.stop()
    return [table(runs)]


def table(runs: list[Run]) -> Table:
    """The runs side by side, as ratios to the first."""
    first = runs[0]
    result = Table(
        f"{first.uploads} concurrent multipart POSTs of {first.size // MiB} MiB to S3, one server",
        [
            "server",
            "idle RSS MiB",
            "peak RSS MiB",
            "MiB per upload",
            "peak vs first row",
            "MB/s at once",
            "MB/s alone",
            "MiB per stalled PUT",
        ],
    )
    for r in runs:
        result.add(
            r.label,
            f"{r.idle / MiB:.0f}",
            f"{r.peak / MiB:.0f}",
            f"{(r.peak - r.idle) / MiB / r.uploads:.1f}",
            f"{r.peak / first.peak:.2f}x",
            f"{r.uploads * r.size / r.seconds / 1e6:.0f}",
            f"{r.size / r.alone_seconds / 1e6:.0f}",
            f"{r.stalled_growth / MiB / r.stalled:.2f}",
        )
    result.notes.append(
        "MiB per upload: the growth of the server's RSS from idle (after a warm-up) to its "
        "peak (VmHWM), over the uploads in flight. SeaweedFS, the client and the server "
        "share the machine's cores."
    )
    result.notes.append(
        f"MiB per stalled PUT: the RSS growth while {first.stalled} PUTs that sent "
        f"{STALLED_SENT // 1024} KiB each and stopped are held open, per PUT."
    )
    return result
