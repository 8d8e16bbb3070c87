"""One, two and three ``spoolup serve`` behind HAProxy on one SeaweedFS cluster.

The layout of docs/deploy.md and tests/cluster, on this one machine: a SeaweedFS
master, two volume servers and a filer with the S3 gateway; N servers on one bucket;
HAProxy with ``deploy/haproxy.cfg`` (round robin). For N = 1, 2, 3, ``UPLOADS``
concurrent multipart POSTs of ``SIZE`` bytes go through the balancer, and once straight
to the single server (the balancer's own cost). Measured: aggregate MB/s, p50/p99 of
one upload's time, CPU seconds of every process (servers, SeaweedFS, HAProxy, the
client) from ``/proc``, each server's peak RSS, and the S3 requests the gateway counted
(its Prometheus metrics). A tus run adds the storage requests of one resumable upload.

The full run sends 32 uploads of 64 MB per configuration, as issue 12 asks (``--quick``:
4 of 1 MiB). All processes share the same two cores, so the aggregate cannot grow with
N: the table says where the CPU goes instead.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from benchmarks.report import Table
from benchmarks.serving import cpu_seconds, peak_rss, process_tree

if TYPE_CHECKING:
    from tests.cluster.balancer import Balancer
    from tests.cluster.seaweed_cluster import SeaweedCluster
    from tests.cluster.servers import SpoolupServer

TITLE = "Cluster: servers behind HAProxy on one SeaweedFS"
PACKAGES = ("uvicorn", "httpx", "boto3")

MiB = 1024 * 1024
PREFIX = "bench"


@dataclass(frozen=True)
class Sizes:
    uploads: int
    size: int
    tus_uploads: int
    tus_size: int


FULL = Sizes(uploads=32, size=64 * MiB, tus_uploads=4, tus_size=32 * MiB)
QUICK = Sizes(uploads=4, size=MiB, tus_uploads=2, tus_size=9 * MiB)


@dataclass
class Measure:
    label: str
    seconds: float
    times: list[float]
    server_cpu: list[float]
    store_cpu: float
    balancer_cpu: float
    client_cpu: float
    rss: list[int]
    base_rss: list[int]
    requests: dict[str, float]
    uploads: int
    size: int

    @property
    def mb_per_s(self) -> float:
        return self.uploads * self.size / self.seconds / 1e6


def s3_requests(metrics: str) -> dict[str, float]:
    """The S3 gateway's request counters by type (method), summed over codes."""
    counts: dict[str, float] = {}
    for line in httpx.get(metrics, timeout=10).text.splitlines():
        if line.startswith("SeaweedFS_s3_request_total{"):
            kind = re.search(r'type="([^"]*)"', line)
            name = kind.group(1) if kind else "?"
            counts[name] = counts.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def _body(size: int, seed: int) -> tuple[AsyncIterator[bytes], int, str]:
    boundary = "spoolup-bench-cluster"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="b{seed}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = bytes([seed % 251]) * 64 + bytes(range(256)) * 4095 + b"x" * 64

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        left = size
        while left:
            piece = block[: min(len(block), left)]
            left -= len(piece)
            yield piece
        yield tail

    return chunks(), len(head) + size + len(tail), f"multipart/form-data; boundary={boundary}"


async def _upload_all(url: str, uploads: int, size: int) -> tuple[float, list[float], list[str]]:
    limits = httpx.Limits(max_connections=uploads, max_keepalive_connections=uploads)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one(seed: int) -> tuple[float, str]:
            body, length, content_type = _body(size, seed)
            started = time.perf_counter()
            r = await client.post(
                f"{url}/api/files",
                content=body,
                headers={"Content-Type": content_type, "Content-Length": str(length)},
            )
            r.raise_for_status()
            (record,) = r.json()
            return time.perf_counter() - started, str(record["id"])

        started = time.perf_counter()
        done = await asyncio.gather(*(one(seed) for seed in range(uploads)))
        return time.perf_counter() - started, [t for t, _ in done], [i for _, i in done]


def measure(
    label: str,
    url: str,
    servers: list[SpoolupServer],
    cluster: SeaweedCluster,
    balancer: Balancer | None,
    sizes: Sizes,
) -> Measure:
    store_pids = [p.pid for p in cluster.processes.values()]
    balancer_pids = [balancer.process.pid] if balancer is not None else []
    server_pids = [process_tree(pid_of(s)) for s in servers]
    base_rss = [rss_now(pid_of(s)) for s in servers]
    before = (
        [cpu_seconds(p) for p in server_pids],
        cpu_seconds(store_pids),
        cpu_seconds(balancer_pids) if balancer_pids else 0.0,
        time.process_time(),
        s3_requests(cluster.metrics),
    )
    seconds, times, ids = asyncio.run(_upload_all(url, sizes.uploads, sizes.size))
    after_requests = s3_requests(cluster.metrics)
    result = Measure(
        label=label,
        seconds=seconds,
        times=times,
        server_cpu=[cpu_seconds(p) - b for p, b in zip(server_pids, before[0], strict=True)],
        store_cpu=cpu_seconds(store_pids) - before[1],
        balancer_cpu=(cpu_seconds(balancer_pids) - before[2]) if balancer_pids else 0.0,
        client_cpu=time.process_time() - before[3],
        rss=[peak_rss(pid_of(s)) for s in servers],
        base_rss=base_rss,
        requests={k: v - before[4].get(k, 0.0) for k, v in after_requests.items()},
        uploads=sizes.uploads,
        size=sizes.size,
    )
    for file_id in ids:  # keep the disk small between configurations
        httpx.delete(f"{url}/api/files/{file_id}", timeout=60)
    return result


def rss_now(pid: int) -> int:
    """The resident set size (``VmRSS``) of one process now, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pid_of(server: SpoolupServer) -> int:
    assert server.process is not None
    return server.process.pid


def tus_requests(url: str, cluster: SeaweedCluster, sizes: Sizes) -> tuple[dict[str, float], int]:
    """S3 requests of ``tus_uploads`` tus uploads in 8 MiB PATCHes; the PATCH count."""
    from tusclient import client as tus_client

    before = s3_requests(cluster.metrics)
    patches = 0
    lock = threading.Lock()

    def one(seed: int) -> None:
        nonlocal patches
        data = bytes([seed]) * sizes.tus_size
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.seek(0)
            up = tus_client.TusClient(f"{url}/tus/").uploader(
                file_stream=f, chunk_size=8 * MiB, metadata={"filename": f"t{seed}.bin"}
            )
            while up.offset < sizes.tus_size:
                up.upload_chunk()  # type: ignore[no-untyped-call]
                with lock:
                    patches += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(sizes.tus_uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = s3_requests(cluster.metrics)
    return {k: v - before.get(k, 0.0) for k, v in after.items()}, patches


def run(quick: bool) -> list[Table]:
    """Measure 1, 2, 3 servers behind HAProxy and one direct; the tables."""
    from tests.cluster.balancer import Balancer
    from tests.cluster.seaweed_cluster import start_cluster
    from tests.cluster.servers import SpoolupServer

    sizes = QUICK if quick else FULL
    measures: list[Measure] = []
    tus: tuple[dict[str, float], int] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp)
        cluster = start_cluster(folder / "seaweed")
        try:
            for n in (1, 2, 3):
                servers = [
                    SpoolupServer(folder / f"n{n}-s{i}", cluster.s3, PREFIX) for i in range(n)
                ]
                balancer = None
                try:
                    for s in servers:
                        s.start(wait=False)
                    for s in servers:
                        s.wait_up()
                    balancer = Balancer(folder / f"n{n}-lb", [s.url for s in servers])
                    asyncio.run(_upload_all(balancer.url, 2, MiB))  # warm up every path
                    if n == 1:
                        measures.append(
                            measure(
                                "1 server, direct", servers[0].url, servers, cluster, None, sizes
                            )
                        )
                    label = f"{n} server{'s' if n > 1 else ''} behind HAProxy"
                    measures.append(measure(label, balancer.url, servers, cluster, balancer, sizes))
                    if n == 3:
                        tus = tus_requests(balancer.url, cluster, sizes)
                finally:
                    if balancer is not None:
                        balancer.stop()
                    for s in servers:
                        s.stop()
        finally:
            cluster.stop()
    return tables(measures, tus, sizes)


def _pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def tables(
    measures: list[Measure], tus: tuple[dict[str, float], int] | None, sizes: Sizes
) -> list[Table]:
    """The throughput, CPU, memory and storage-request tables."""
    base = next(m for m in measures if m.label.startswith("1 server behind"))
    direct = next(m for m in measures if m.label.endswith("direct"))
    throughput = Table(
        f"{sizes.uploads} concurrent multipart POSTs of {sizes.size // MiB} MiB",
        ["setup", "MB/s", "vs 1 behind HAProxy", "p50 s", "p99 s"],
    )
    for m in measures:
        throughput.add(
            m.label,
            f"{m.mb_per_s:.1f}",
            f"{m.mb_per_s / base.mb_per_s:.2f}x",
            f"{statistics.median(m.times):.2f}",
            f"{_pct(m.times, 0.99):.2f}",
        )
    throughput.notes.append(
        f"HAProxy's own cost: {base.seconds / direct.seconds:.2f}x the direct time for one "
        f"server, {base.balancer_cpu / (base.uploads * base.size / 1e9):.2f} CPU s per GB "
        "in haproxy."
    )
    throughput.notes.append(
        "Everything (client, HAProxy, servers, SeaweedFS) shares two cores: the aggregate "
        "is bounded by the machine, not by the number of servers."
    )
    cpu = Table(
        "Where the CPU goes (CPU seconds per GB uploaded)",
        [
            "setup",
            "servers",
            "per server",
            "SeaweedFS",
            "HAProxy",
            "client",
            "server MB/s per core",
        ],
    )
    for m in measures:
        gb = m.uploads * m.size / 1e9
        total = sum(m.server_cpu)
        cpu.add(
            m.label,
            f"{total / gb:.1f}",
            " / ".join(f"{c / gb:.1f}" for c in m.server_cpu),
            f"{m.store_cpu / gb:.1f}",
            f"{m.balancer_cpu / gb:.2f}",
            f"{m.client_cpu / gb:.1f}",
            f"{m.uploads * m.size / 1e6 / total:.0f}" if total else "-",
        )
    cpu.notes.append(
        "server MB/s per core: bytes received per CPU second of spoolup serve (parsing, "
        "hashing, sending parts to S3); the figure to size servers with."
    )
    memory = Table(
        "Memory and storage requests",
        ["setup", "idle RSS MiB", "peak RSS MiB", "MiB per upload", "S3 requests per upload"],
    )
    for m in measures:
        per = {k: v / m.uploads for k, v in sorted(m.requests.items()) if v}
        grown = sum(p - b for p, b in zip(m.rss, m.base_rss, strict=True))
        memory.add(
            m.label,
            " / ".join(f"{r / MiB:.0f}" for r in m.base_rss),
            " / ".join(f"{r / MiB:.0f}" for r in m.rss),
            f"{grown / m.uploads / MiB:.1f}",
            ", ".join(f"{k} {v:.1f}" for k, v in per.items()),
        )
    memory.notes.append(
        f"{sizes.uploads} uploads at once over the servers of each row. MiB per upload: "
        "the growth of the servers' RSS from idle to peak, over the uploads in flight. S3 "
        "counts from the gateway's SeaweedFS_s3_request_total (type = HTTP method)."
    )
    out = [throughput, cpu, memory]
    if tus is not None:
        counts, patches = tus
        per_upload = ", ".join(
            f"{k} {v / sizes.tus_uploads:.1f}" for k, v in sorted(counts.items()) if v
        )
        table = Table(
            f"Storage requests of one tus upload ({sizes.tus_size // MiB} MiB in 8 MiB PATCHes)",
            ["uploads", "PATCHes", "S3 requests per upload", "per PATCH"],
        )
        table.add(
            str(sizes.tus_uploads),
            str(patches),
            per_upload,
            f"{sum(counts.values()) / max(patches, 1):.1f}",
        )
        table.notes.append(
            "Each PATCH: the lease (read, conditional create or replace, conditional "
            "delete), the state read and write, the part; creation and completion add a few."
        )
        out.append(table)
    return out
