"""End to end: a large file uploaded with ``curl -F`` to ``spoolup serve`` and to peer apps.

Every app runs in its own process on the same uvicorn (``--http httptools``, one
worker) on 127.0.0.1, and receives the same multipart upload from ``curl -F``:

- drain: an ASGI app that reads the body and throws it away (the ceiling);
- raw to file: an ASGI app that writes the raw body to a file as it arrives;
- starlette: ``await request.form()`` then a copy of the ``UploadFile`` to its place
  (Starlette spools the file to a temp file first);
- django: Django's ASGI handler, ``request.FILES`` then a copy in chunks (Django spools
  the body, then the file, each to a temp file);
- spoolup serve: ``POST /api/files`` into local storage (streamed straight to the
  storage folder with its sha256; flushed and fsynced before the answer), with its
  defaults: Prometheus metrics on, no hooks;
- spoolup serve, no metrics: the same with ``--no-metrics``, so that the cost of the
  metrics shows as a ratio taken in the same run (issue 14: under 5 %);
- spoolup serve, hooks on: the same with ``--hook-url`` to a hook receiver running in
  the benchmark process (every hook of the upload, post-receive once a second).

A second measurement takes the network, curl and the other processes' noise out of the
cost of metrics and hooks: the app is driven in this process with the ASGI messages of
one multipart upload (64 KiB each, as from a socket), metrics off and on (and with
no-op Python hooks) in turn, many times, and the CPU seconds of this process (all its
threads: parsing, hashing, writing) per GiB are compared.

For each: throughput (file bytes / curl's total time; best and median of the runs),
the ratios to the drain app, the CPU time the server process used per GiB (user +
system, from ``/proc/<pid>/stat``: less sensitive than throughput to other work on the
machine), the bytes the server process wrote to disk per byte uploaded
(``write_bytes`` of ``/proc/<pid>/io``, which counts the page-cache writes a process
makes, whether or not a deleted temp file ever reaches the disk), and the server's
peak RSS (``VmHWM``). The apps take turns (one run of each, then again), so that a
busy spell slows them alike; the load average is noted. Run with ``python -m
benchmarks server`` (1 GiB, 5 runs) or ``--quick`` (32 MiB, 1 run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.report import Table
from benchmarks.serving import (
    cpu_seconds,
    empty_folders,
    free_port,
    peak_rss,
    proc_io,
    uvicorn_command,
    wait_for_port,
)

TITLE = "spoolup serve: a large upload with curl -F, against peer apps on the same uvicorn"
PACKAGES = ("spoolup", "uvicorn", "httptools", "starlette", "python-multipart", "django")

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
CHUNK = 1024 * 1024

# -- the peer apps (imported by uvicorn in the server process, via --factory) ----------


def _dest_dir() -> Path:
    return Path(os.environ["BENCH_DEST"])


async def _drain(scope: Any, receive: Any) -> int:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return size


async def _answer(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def drain_app() -> Any:
    """An ASGI app that reads every byte of the body and keeps none."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = await _drain(scope, receive)
        await _answer(send, str(size).encode())

    return app


def raw_file_app() -> Any:
    """An ASGI app that writes the raw body to a file as it arrives (in worker threads)."""
    import asyncio

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = _dest_dir() / f"raw-{time.monotonic_ns()}"
        with path.open("wb") as file:
            pending: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                body = message.get("body", b"")
                pending.append(body)
                size += len(body)
                more = message.get("more_body", False)
                if size >= CHUNK or not more:
                    await asyncio.to_thread(file.write, b"".join(pending))
                    pending, size = [], 0
                if not more:
                    break
        await _answer(send, b"ok")

    return app


def starlette_app() -> Any:
    """Starlette the usual way: ``await request.form()``, then copy the file to its place."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def upload(request: Request) -> PlainTextResponse:
        form = await request.form()
        try:
            upload = form["file"]
            path = _dest_dir() / f"starlette-{time.monotonic_ns()}"

            def copy() -> None:
                upload.file.seek(0)  # type: ignore[union-attr]
                with path.open("wb") as out:
                    shutil.copyfileobj(upload.file, out, CHUNK)  # type: ignore[union-attr]

            await run_in_threadpool(copy)
        finally:
            await form.close()
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", upload, methods=["POST"])])


def django_app() -> Any:
    """Django the usual way: ``request.FILES``, then the file copied in chunks."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="bench",
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            DATA_UPLOAD_MAX_MEMORY_SIZE=None,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def _django_view(request: Any) -> Any:
    from django.http import HttpResponse

    upload = request.FILES["file"]
    path = _dest_dir() / f"django-{time.monotonic_ns()}"
    with path.open("wb") as out:
        for chunk in upload.chunks(CHUNK):
            out.write(chunk)
    upload.close()
    return HttpResponse("ok")


def __getattr__(name: str) -> Any:
    # Django reads ``urlpatterns`` from ROOT_URLCONF (this module) only when it serves.
    if name == "urlpatterns":
        from django.urls import path
        from django.views.decorators.csrf import csrf_exempt

        return [path("", csrf_exempt(_django_view))]
    raise AttributeError(name)


# -- the measurement -------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    write_bytes: int
    peak_rss: int
    cpu_seconds: float


class _HookAnswer(BaseHTTPRequestHandler):
    """Answers every hook request with an empty 200 (go on)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _hook_receiver() -> Iterator[str]:
    """A hook receiver on 127.0.0.1 for the length of the block; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HookAnswer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _server_command(
    name: str, port: int, storage: Path, hook_url: str | None = None
) -> tuple[list[str], str]:
    """The command that serves app ``name`` and the URL to upload to."""
    url = f"http://127.0.0.1:{port}/"
    if name.startswith("spoolup serve"):
        command = [
            sys.executable,
            "-m",
            "spoolup.cli",
            "serve",
            "--port",
            str(port),
            "--storage",
            str(storage),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if name == "spoolup serve, no metrics":
            command.append("--no-metrics")
        if name == "spoolup serve, hooks on":
            assert hook_url is not None
            command += ["--hook-url", hook_url]
        return command, url + "api/files"
    factory = {
        "drain": "drain_app",
        "raw to file": "raw_file_app",
        "starlette": "starlette_app",
        "django": "django_app",
    }[name]
    return uvicorn_command(f"benchmarks.bench_server:{factory}", port), url


def _run_app(name: str, upload: Path, work: Path, runs: int = 1) -> Result:
    """Upload ``runs`` times (a fresh server each time); the fastest run."""
    results = [_run_once(name, upload, work) for _ in range(runs)]
    return min(results, key=lambda r: r.seconds)


def _run_once(name: str, upload: Path, work: Path) -> Result:
    """Start the app in a fresh server, upload once, stop it."""
    empty_folders(work / "dest", work / "tmp")
    if name == "spoolup serve, hooks on":
        with _hook_receiver() as hook_url:
            return _measure(name, upload, work, hook_url)
    return _measure(name, upload, work, None)


def _measure(name: str, upload: Path, work: Path, hook_url: str | None) -> Result:
    dest, tmp = work / "dest", work / "tmp"
    port = free_port()
    command, url = _server_command(name, port, dest, hook_url)
    env = {**os.environ, "BENCH_DEST": str(dest), "TMPDIR": str(tmp)}
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_for_port(port, process)
        os.sync()
        before = proc_io(process.pid)["write_bytes"]
        cpu_before = cpu_seconds([process.pid])
        started = time.perf_counter()
        done = subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Expect:",
                "-F",
                f"file=@{upload}",
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.stdout.strip() not in {"200", "201"}:
            raise RuntimeError(f"{name}: curl said {done.stdout!r} {done.stderr!r}")
        written = proc_io(process.pid)["write_bytes"] - before
        cpu = cpu_seconds([process.pid]) - cpu_before
        result = Result(seconds, written, peak_rss(process.pid), cpu)
    finally:
        process.terminate()
        process.wait(30)
    shutil.rmtree(work / "dest", ignore_errors=True)
    shutil.rmtree(work / "tmp", ignore_errors=True)
    return result


def _make_upload(path: Path, size: int) -> None:
    with path.open("wb") as file:
        left = size
        while left:
            n = min(left, 16 * MiB)
            file.write(os.urandom(n))
            left -= n


APPS = (
    "drain",
    "raw to file",
    "starlette",
    "django",
    "spoolup serve",
    "spoolup serve, no metrics",
    "spoolup serve, hooks on",
)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def run(quick: bool) -> list[Table]:
    """Upload one file to each app; return the table of throughput, CPU, disk writes, RSS."""
    size = 32 * MiB if quick else 1024 * MiB
    runs = 1 if quick else 5
    # Beside the checkout, on its disk (not tmpfs), so that disk writes are counted.
    work = Path(tempfile.mkdtemp(prefix="bench-server-", dir=ROOT / "benchmarks" / "results"))
    loads = [os.getloadavg()[0]]
    results: dict[str, list[Result]] = {name: [] for name in APPS}
    try:
        upload = work / "upload.bin"
        _make_upload(upload, size)
        for _ in range(runs):
            for name in APPS:
                results[name].append(_run_once(name, upload, work))
            loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rates = {name: [size / r.seconds for r in rs] for name, rs in results.items()}
    drain_best, drain_median = max(rates["drain"]), _median(rates["drain"])
    table = Table(
        f"one file of {size // MiB} MiB, curl -F over 127.0.0.1, {runs} runs each",
        [
            "app",
            "MB/s best",
            "vs drain",
            "MB/s median",
            "vs drain",
            "server CPU s / GiB",
            "disk bytes / byte",
            "peak RSS (MiB)",
        ],
    )
    for name, rs in results.items():
        best, median = max(rates[name]), _median(rates[name])
        cpu = _median([r.cpu_seconds for r in rs]) * (1024 * MiB) / size
        table.add(
            name,
            f"{best / 1e6:.0f}",
            f"{best / drain_best:.2f}x",
            f"{median / 1e6:.0f}",
            f"{median / drain_median:.2f}x",
            f"{cpu:.2f}",
            f"{max(r.write_bytes for r in rs) / size:.2f}",
            f"{max(r.peak_rss for r in rs) / MiB:.0f}",
        )
    table.notes += [
        "MB/s: 10**6 bytes of file per second of curl's whole request (connect to answer); "
        "best and median of the runs, each against the drain app's best and median.",
        "server CPU: user + system seconds of the server process during the upload "
        "(median), per GiB uploaded; curl's own CPU is not counted.",
        "disk bytes / byte: write_bytes of the server process (/proc/<pid>/io) during the "
        "upload, divided by the file size; temp files count even if deleted before writeback.",
        "peak RSS: VmHWM of the server process (one upload per process).",
        "spoolup serve flushes and fsyncs each stored file before answering; the peers do not.",
        f"load average (1 min) before and after each round: {', '.join(f'{x:.2f}' for x in loads)}"
        f" on {os.cpu_count()} logical cores; curl and the server share them.",
        "Targets (issue 5): spoolup >= 0.8x drain, 1.0 disk byte per byte, peak RSS < 150 MiB.",
    ]
    in_process = _in_process_table(32 * MiB if quick else 256 * MiB, 2 if quick else 15)
    return [table, _operations_table(results, rates, size, runs), in_process]


def _operations_table(
    results: dict[str, list[Result]], rates: dict[str, list[float]], size: int, runs: int
) -> Table:
    """What metrics and hooks cost spoolup serve, as ratios to the run without metrics."""
    base = "spoolup serve, no metrics"
    base_rate = _median(rates[base])
    base_cpu = _median([r.cpu_seconds for r in results[base]])
    table = Table(
        f"the cost of metrics and hooks to spoolup serve ({size // MiB} MiB, {runs} runs each)",
        ["spoolup serve", "MB/s median", "vs no metrics", "server CPU s / GiB", "vs no metrics"],
    )
    variants = {
        base: "no metrics, no hooks",
        "spoolup serve": "metrics on, no hooks (the default)",
        "spoolup serve, hooks on": "metrics on, hooks on",
    }
    for name, label in variants.items():
        rate = _median(rates[name])
        cpu = _median([r.cpu_seconds for r in results[name]])
        table.add(
            label,
            f"{rate / 1e6:.0f}",
            f"{rate / base_rate:.3f}x",
            f"{cpu * (1024 * MiB) / size:.2f}",
            f"{cpu / base_cpu:.3f}x" if base_cpu else "-",
        )
    table.notes += [
        "Target (issue 14): metrics on and hooks off cost less than 5 % of the throughput "
        "(a ratio of at least 0.95x to the run without metrics).",
        "The three run in turn with the other apps, on the same file; medians of the runs.",
        "hooks on: every hook goes to a receiver in the benchmark process on 127.0.0.1 "
        "(pre-create and pre-finish are waited for; post-receive once a second); each "
        "upload is its server process's first, so it also pays the webhook client's "
        "one-time set-up on its first call (about 90 ms of CPU, 3 ms a call after).",
    ]
    return table


# -- in process: the app driven with ASGI messages, CPU time compared --------------------

IN_PROCESS = ("metrics off", "metrics on", "metrics on, no-op hooks")
_MESSAGE = 64 * 1024


def _multipart(size: int) -> tuple[bytes, list[bytes]]:
    """The boundary and the body of one file of ``size`` random bytes, in 64 KiB pieces."""
    boundary = b"bench-boundary-7d3f"
    head = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="upload.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head + os.urandom(size) + b"\r\n--" + boundary + b"--\r\n"
    return boundary, [body[i : i + _MESSAGE] for i in range(0, len(body), _MESSAGE)]


async def _asgi_upload(app: Any, boundary: bytes, pieces: list[bytes]) -> int:
    """``POST /api/files`` with ``pieces`` as the body's messages; the answer's status."""
    length = sum(len(p) for p in pieces)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/files",
        "raw_path": b"/api/files",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"multipart/form-data; boundary=" + boundary),
            (b"content-length", str(length).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    queue = iter(pieces)
    last = len(pieces) - 1
    sent = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        piece = next(queue, b"")
        sent += 1
        return {"type": "http.request", "body": piece, "more_body": sent <= last}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _in_process_table(size: int, runs: int) -> Table:
    """CPU seconds per GiB of one upload driven in process, metrics off and on, in turn."""
    import asyncio

    from spoolup.server.app import create_app
    from spoolup.server.config import ServerConfig
    from spoolup.server.hooks import HookRequest

    def nothing(request: HookRequest) -> None:
        return None

    no_op = dict.fromkeys(
        ("pre-create", "post-create", "post-receive", "pre-finish", "post-finish"), nothing
    )
    work = Path(tempfile.mkdtemp(prefix="bench-server-", dir=ROOT / "benchmarks" / "results"))
    cpu: dict[str, list[float]] = {name: [] for name in IN_PROCESS}

    async def measure() -> None:
        boundary, pieces = _multipart(size)
        apps = {}
        for name in IN_PROCESS:
            config = ServerConfig(storage=str(work / name), metrics=name != "metrics off")
            hooks = no_op if name.endswith("hooks") else None
            apps[name] = create_app(config, hooks=hooks)
        for app in apps.values():  # a first upload each, not counted: imports, caches
            assert await _asgi_upload(app, boundary, pieces) == 201
        for _ in range(runs):
            for name, app in apps.items():
                storage = app.state.store.storage
                for stored in storage.list("files/").items:
                    storage.delete(stored.key)
                started = time.process_time()
                status = await _asgi_upload(app, boundary, pieces)
                cpu[name].append(time.process_time() - started)
                assert status == 201, status

    try:
        asyncio.run(measure())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = _median(cpu["metrics off"])
    table = Table(
        f"in process: {size // MiB} MiB multipart upload as ASGI messages, {runs} runs each",
        ["spoolup serve's app", "CPU s / GiB, median", "vs metrics off", "MB per CPU second"],
    )
    for name in IN_PROCESS:
        median = _median(cpu[name])
        table.add(
            name,
            f"{median * (1024 * MiB) / size:.3f}",
            f"{median / base:.3f}x",
            f"{size / median / 1e6:.0f}",
        )
    table.notes += [
        "CPU: time.process_time() of the benchmark process around each upload (every thread: "
        "parsing, sha256, writing, fsync's CPU part), median of the runs; the variants take "
        "turns, after one upload each that is not counted.",
        "No network and no other process of this benchmark: the measure of what the metrics "
        "add per upload that the end-to-end table above cannot resolve on a busy machine.",
        "no-op hooks: Python callables for every hook of an upload, each answering None.",
    ]
    return table
