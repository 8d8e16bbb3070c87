"""tus: ``spoolup serve`` against ``@tus/server`` (Node) and tuspyserver, one client.

Three workloads, each an upload of random bytes from a file:

- one PATCH: the whole file in a single PATCH;
- 4 MiB PATCHes: the same file in 4 MiB PATCHes on one connection;
- 8 at once: 8 uploads of an eighth of the size side by side, 8 MiB PATCHes.

Servers, each a child process on 127.0.0.1, started afresh for every measurement:

- spoolup: ``spoolup serve`` (its defaults: metrics on, checkpoints every 64 MiB or
  2 s with fsync, the finished upload moved into ``files/`` and its sha256 computed
  while receiving);
- @tus/server: ``@tus/server`` 2 with ``@tus/file-store`` (``benchmarks/tus_node``,
  the npm lock file committed; it never fsyncs);
- tuspyserver: tuspyserver's FastAPI router under uvicorn (``--http httptools``).

On S3 (a SeaweedFS started on 127.0.0.1): spoolup with ``--storage s3://...`` against
``@tus/server`` with ``@tus/s3-store`` (8 MiB parts for both).

The client is the same for every server: raw HTTP/1.1 on one socket per upload, bodies
sent with ``sendfile``, so it costs little CPU. For each: throughput (MB/s: file bytes
over the wall time of the uploads), the server's CPU seconds per GiB (user + system of
its process tree, from ``/proc``), its peak RSS and peak RSS growth over the idle
server after a warm-up upload. The stored bytes are read back and their sha256 checked
for every upload (outside the timing). The servers take turns (one run of each, then
again) and the median run is reported. ``python -m benchmarks tus`` (1 GiB, 3 runs) or
``--quick`` (32 MiB, 1 run); on S3 the file is 256 MiB (SeaweedFS on the same two
cores is the bottleneck there).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.report import Table
from benchmarks.serving import (
    cpu_seconds,
    free_port,
    peak_rss,
    process_tree,
    stop,
    uvicorn_command,
    wait_for_port,
)

TITLE = "tus: spoolup serve against @tus/server (Node) and tuspyserver, one client"
PACKAGES = ("spoolup", "uvicorn", "httptools", "tuspyserver", "fastapi", "boto3")

ROOT = Path(__file__).resolve().parents[1]
NODE = ROOT / "benchmarks" / "tus_node"
MiB = 1024 * 1024
GiB = 1024 * MiB


# -- the client --------------------------------------------------------------------------


class Connection:
    """One HTTP/1.1 connection to 127.0.0.1, sending bodies from a file with sendfile."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: tuple[int, int, int] | None = None,
    ) -> tuple[int, dict[str, str]]:
        """Send a request, the body ``(fd, offset, count)`` of a file; the answer's status
        and headers (lowercased names; any body is read and dropped)."""
        count = 0 if body is None else body[2]
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {count}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        if body is not None:
            fd, offset, left = body
            while left:
                sent = os.sendfile(self.sock.fileno(), fd, offset, left)
                offset += sent
                left -= sent
        return self._response(method)

    def _response(self, method: str) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD":
            pass
        elif "chunked" in headers.get("transfer-encoding", ""):
            while True:  # only the small bodies of errors and creations come chunked
                while b"\r\n" not in self.buffer:
                    self._more()
                size_line, _, rest = self.buffer.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    self._more()
                    rest = self.buffer.partition(b"\r\n")[2]
                self.buffer = rest[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                self._more()
            self.buffer = self.buffer[length:]
        return int(status_line.split()[1]), headers

    def _more(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data


@dataclass
class Uploaded:
    """One finished upload: where the server put it."""

    location: str
    headers: dict[str, str]


def upload(port: int, collection: str, fd: int, start: int, size: int, patch_size: int) -> Uploaded:
    """Create an upload of ``size`` bytes of the file at ``start`` and PATCH them in."""
    conn = Connection(port)
    try:
        base = {"Tus-Resumable": "1.0.0"}
        status, headers = conn.request(
            "POST",
            collection,
            {**base, "Upload-Length": str(size), "Upload-Metadata": "filename YmVuY2guYmlu"},
        )
        assert status == 201, f"create: {status}"
        location = headers["location"]
        path = location.split("://", 1)[-1]
        path = path[path.index("/") :] if "://" in location else location
        offset = 0
        while offset < size:
            count = min(patch_size, size - offset)
            status, headers = conn.request(
                "PATCH",
                path,
                {
                    **base,
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                },
                (fd, start + offset, count),
            )
            assert status == 204, f"PATCH at {offset}: {status}"
            offset = int(headers["upload-offset"])
        return Uploaded(path, headers)
    finally:
        conn.close()


# -- the servers -------------------------------------------------------------------------


@dataclass
class Running:
    """A server under test: its process, port, collection path and storage."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    collection: str
    stored: Callable[[Uploaded], Iterator[bytes]]
    folder: str


@dataclass
class Setup:
    """Where the servers store: a scratch folder, and a SeaweedFS for the S3 rounds."""

    folder: Path
    s3: Any = None
    counter: list[int] = field(default_factory=lambda: [0])

    def fresh(self, name: str) -> Path:
        self.counter[0] += 1
        path = self.folder / f"{name}-{self.counter[0]}"
        path.mkdir()
        return path


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(8 * MiB):
            yield chunk


def _s3_object(setup: Setup, key: str) -> Iterator[bytes]:
    body = setup.s3.client().get_object(Bucket=setup.s3.bucket, Key=key)["Body"]
    yield from body.iter_chunks(8 * MiB)


def _spawn(command: list[str], env: dict[str, str], cwd: Path | None = None) -> Any:
    return subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_spoolup(setup: Setup, *, s3: bool) -> Running:
    import sys

    port = free_port()
    folder = setup.fresh("spoolup")
    env: dict[str, str] = {"TMPDIR": str(folder)}
    storage = str(folder / "data")
    if s3:
        storage = f"s3://{setup.s3.bucket}/spoolup-{setup.counter[0]}"
        env.update(setup.s3.env())
    command = [sys.executable, "-m", "spoolup.cli", "serve", "--port", str(port)]
    process = _spawn([*command, "--storage", storage, "--no-access-log"], env)

    def stored(done: Uploaded) -> Iterator[bytes]:
        import base64
        import json

        record = json.loads(base64.b64decode(done.headers["spoolup-file-record"]))
        if s3:
            return _s3_object(setup, f"{storage.split('/', 3)[3]}/files/{record['id']}")
        return _chunks(Path(storage) / "files" / record["id"])

    return Running("spoolup", process, port, "/tus/", stored, folder.name)


def start_node(setup: Setup, *, s3: bool) -> Running:
    port = free_port()
    folder = setup.fresh("node")
    target = f"s3://{setup.s3.bucket}" if s3 else str(folder)
    env = setup.s3.env() if s3 else {}
    process = _spawn(["node", str(NODE / "server.mjs"), str(port), target], env, cwd=NODE)

    def stored(done: Uploaded) -> Iterator[bytes]:
        upload_id = done.location.rstrip("/").rsplit("/", 1)[1]
        return _s3_object(setup, upload_id) if s3 else _chunks(folder / upload_id)

    return Running("@tus/server", process, port, "/files/", stored, folder.name)


def start_tuspyserver(setup: Setup, *, s3: bool) -> Running:
    port = free_port()
    folder = setup.fresh("tuspy")
    command = uvicorn_command("benchmarks.tus_peers:tuspyserver_app", port)
    process = _spawn(command, {"TUS_BENCH_DIR": str(folder)}, cwd=ROOT)

    def stored(done: Uploaded) -> Iterator[bytes]:
        return _chunks(folder / done.location.rstrip("/").rsplit("/", 1)[1])

    return Running("tuspyserver", process, port, "/files/", stored, folder.name)


@contextmanager
def running(start: Callable[..., Running], setup: Setup, *, s3: bool) -> Iterator[Running]:
    server = start(setup, s3=s3)
    try:
        wait_for_port(server.port, server.process)
        yield server
    finally:
        stop(server.process)
        # What it stored was checked: free the disk for the next one.
        shutil.rmtree(setup.folder / f"{server.folder}", ignore_errors=True)


def ensure_node_modules() -> None:
    """``npm ci`` in ``benchmarks/tus_node`` unless its packages are there."""
    if not (NODE / "node_modules" / "@tus" / "server").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed for the @tus/server peer (apt-get install npm)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE, check=True)


# -- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    uploads: int
    patch_size: int  # 0: the whole upload in one PATCH


@dataclass
class Measured:
    mb_s: float
    cpu_per_gib: float
    peak_mib: float
    growth_mib: float


def measure(server: Running, workload: Workload, data: Path, digest: list[str]) -> Measured:
    """Run ``workload`` against ``server``; check every stored sha256."""
    size = data.stat().st_size
    each = size // workload.uploads
    with data.open("rb") as file:
        fd = file.fileno()
        # Warm up (imports, first connection), then take the idle baseline.
        upload(server.port, server.collection, fd, 0, MiB, MiB)
        pids = process_tree(server.process.pid)
        base_rss = max(_rss(pid) for pid in pids)
        cpu = cpu_seconds(pids)
        results: list[Uploaded] = []
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                patch = workload.patch_size or each
                results.append(upload(server.port, server.collection, fd, i * each, each, patch))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(workload.uploads)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        used = cpu_seconds(pids) - cpu
        peak = max(peak_rss(pid) for pid in pids)
    if errors:
        raise errors[0]
    got = sorted(_sha256(server.stored(done)) for done in results)
    if got != sorted(digest):
        raise AssertionError(f"{server.name}: a stored file has the wrong sha256")
    return Measured(size / elapsed / 1e6, used / (size / GiB), peak / MiB, (peak - base_rss) / MiB)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _sha256(chunks: Iterator[bytes]) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()


def make_data(path: Path, size: int, parts: int) -> list[str]:
    """Random bytes in ``path``; the sha256 of the whole (first) and of each of ``parts``."""
    whole = hashlib.sha256()
    each = size // parts
    digests = []
    with path.open("wb") as file:
        for _ in range(parts):
            part = hashlib.sha256()
            left = each
            while left:
                block = os.urandom(min(left, 16 * MiB))
                whole.update(block)
                part.update(block)
                file.write(block)
                left -= len(block)
            digests.append(part.hexdigest())
    return [whole.hexdigest(), *digests]


def table(
    title: str,
    servers: list[tuple[str, Callable[..., Running]]],
    workloads: list[Workload],
    setup: Setup,
    data: Path,
    digests: list[str],
    runs: int,
    *,
    s3: bool,
) -> Table:
    """Every workload against every server, interleaved, ``runs`` times: one table."""
    out = Table(
        title,
        [
            "workload",
            "server",
            "MB/s",
            "vs @tus/server",
            "CPU s/GiB",
            "peak RSS MiB",
            "RSS growth MiB",
        ],
    )
    for workload in workloads:
        # The 8-at-once digests are of the eighths; the others of the whole file.
        want = digests[1:] if workload.uploads > 1 else digests[:1]
        seen: dict[str, list[Measured]] = {name: [] for name, _ in servers}
        for _ in range(runs):
            for name, start in servers:
                with running(start, setup, s3=s3) as server:
                    seen[name].append(measure(server, workload, data, want))
        node = statistics.median(m.mb_s for m in seen["@tus/server"])
        for name, _ in servers:
            ms = seen[name]
            mb_s = statistics.median(m.mb_s for m in ms)
            out.add(
                workload.name,
                name,
                f"{mb_s:.0f}",
                f"{mb_s / node:.2f}x",
                f"{statistics.median(m.cpu_per_gib for m in ms):.2f}",
                f"{max(m.peak_mib for m in ms):.0f}",
                f"{max(m.growth_mib for m in ms):.0f}",
            )
    return out


def workloads(size: int) -> list[Workload]:
    """The three workloads for a file of ``size`` bytes."""
    return [
        Workload(f"one PATCH of {size // MiB} MiB", 1, 0),
        Workload(f"{size // MiB} MiB in 4 MiB PATCHes", 1, 4 * MiB),
        Workload(f"8 x {size // 8 // MiB} MiB at once, 8 MiB PATCHes", 8, 8 * MiB),
    ]


def run(quick: bool) -> list[Table]:
    """The local table and the S3 one."""
    from tests.seaweed import start_seaweed

    ensure_node_modules()
    size = 32 * MiB if quick else GiB
    # SeaweedFS on the same two cores is several times slower than the disk: the S3
    # workloads are scaled down to keep the run under half an hour.
    s3_size = 32 * MiB if quick else 256 * MiB
    runs = 1 if quick else 3
    notes = [
        f"median of {runs} interleaved run(s); the machine is shared (2 cores; other work "
        "ran beside the benchmark), so throughput is noisy: CPU per GiB is steadier",
        "RSS growth: peak RSS during the workload over the RSS after a 1 MiB warm-up",
        "every stored file was read back and its sha256 checked",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-tus-") as tmp:
        folder = Path(tmp)
        data = folder / "data.bin"
        digests = make_data(data, size, 8)
        setup = Setup(folder)
        local = table(
            "local disk",
            [
                ("spoolup", start_spoolup),
                ("@tus/server", start_node),
                ("tuspyserver", start_tuspyserver),
            ],
            workloads(size),
            setup,
            data,
            digests,
            runs,
            s3=False,
        )
        local.notes += notes
        data.unlink()
        s3_data = folder / "s3-data.bin"
        s3_digests = make_data(s3_data, s3_size, 8)
        setup.s3 = start_seaweed(folder / "seaweed")
        try:
            s3 = table(
                "S3 (SeaweedFS on 127.0.0.1)",
                [("spoolup", start_spoolup), ("@tus/server", start_node)],
                workloads(s3_size),
                setup,
                s3_data,
                s3_digests,
                runs,
                s3=True,
            )
        finally:
            setup.s3.stop()
        s3.notes += [*notes, "@tus/server with @tus/s3-store, spoolup with S3Storage"]
    return [local, s3]
