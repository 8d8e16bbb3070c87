"""Each framework's own upload handling against spoolup's integration, on the same server.

Per framework (``FRAMEWORKS``), two apps from ``benchmarks/frameworks/<module>.py`` (see
that package's docstring for the routes), each served alone by the same server on
127.0.0.1: uvicorn (``--http httptools``, one worker) for ASGI, gunicorn (one sync
worker) for WSGI. A fresh server per backup upload, so its peak RSS is that upload's
(the image and the junk follow the first backup on the same server). Three
cases, all sent by Debian's ``curl -F``:

- backup: a 1 GiB file of random bytes to ``POST /backup``, kept with its sha256 (the
  answer's sha256 is checked). Throughput (file bytes per second of curl's whole
  request), server CPU seconds per GiB (user + system of the server's process tree),
  disk bytes written per byte uploaded (``write_bytes`` of ``/proc/<pid>/io``, summed
  over the tree: a temp file counts even if deleted before writeback) and peak RSS
  (``VmHWM`` of the process that ran the app).
- image: a 1.9 MB PNG to ``POST /image``, checked in memory: disk bytes per byte
  (spoolup's target: 0).
- junk: 200 MB to ``POST /limited``, whose limit is 2 MB in the framework's own
  setting: the status, and how many body bytes the app had read when it answered
  (counted by :mod:`benchmarks.frameworks.serve`; target < 1 MB).

The native and spoolup apps take turns (one run of each, then again) so that a busy
spell slows them alike. ``python -m benchmarks frameworks`` (1 GiB, 3 runs) or
``--quick`` (32 MiB and 16 MiB of junk, 1 run). To add a framework, add its module
and a :class:`Framework` row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from benchmarks.report import Table
from benchmarks.serving import (
    cpu_seconds,
    empty_folders,
    free_port,
    peak_rss,
    process_tree,
    stop,
    uvicorn_command,
    wait_for_port,
    write_bytes,
)

TITLE = "Frameworks: each one's own upload handling against spoolup, 1 GiB with curl -F"
PACKAGES = (
    "spoolup",
    "fastapi",
    "starlette",
    "python-multipart",
    "flask",
    "werkzeug",
    "litestar",
    "multipart",
    "django",
    "uvicorn",
    "httptools",
    "gunicorn",
)

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
MB = 1000 * 1000


@dataclass(frozen=True)
class Framework:
    """One framework's row: its app module, its server, the two app factories."""

    name: str
    module: str
    server: str  # "uvicorn" (ASGI) or "gunicorn" (WSGI)
    native: str = "native_app"
    spoolup: str = "spoolup_app"


FRAMEWORKS = [
    Framework("FastAPI", "fastapi_app", "uvicorn"),
    Framework("Flask", "flask_app", "gunicorn"),
    Framework("Litestar", "litestar_app", "uvicorn"),
    Framework("Django WSGI", "django_app", "gunicorn", "native_wsgi", "spoolup_wsgi"),
    Framework("Django ASGI", "django_app", "uvicorn", "native_asgi", "spoolup_asgi"),
]


@dataclass(frozen=True)
class Sizes:
    """How much each case sends, and how many runs of the backup case."""

    backup: int
    junk: int
    runs: int


FULL = Sizes(backup=1024 * MiB, junk=200 * MB, runs=3)
QUICK = Sizes(backup=32 * MiB, junk=16 * MB, runs=1)


@dataclass
class Run:
    """What one upload cost the server, and what it answered."""

    status: int  # the server's answer (from its log)
    client_status: int  # what curl read: 0 when cut off while still sending
    answer: str
    seconds: float
    written: int
    cpu: float
    peak_rss: int
    app_read: int | None
    sent: int


def server_command(framework: Framework, port: int) -> list[str]:
    """The command that serves the app of ``$BENCH_APP`` with the framework's server."""
    if framework.server == "gunicorn":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "benchmarks.frameworks.serve:wsgi()",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--timeout",
            "600",
            "--log-level",
            "warning",
        ]
    return uvicorn_command("benchmarks.frameworks.serve:asgi", port)


@dataclass
class Target:
    """A running server: its port and process tree."""

    port: int
    pids: list[int]
    log: int  # the read end of the pipe of "<status> <bytes read>" lines


@contextmanager
def serving(framework: Framework, factory: str, work: Path) -> Iterator[Target]:
    """Serve one app of ``framework`` in a fresh server with empty dest and temp folders."""
    dest, tmp = empty_folders(work / "dest", work / "tmp")
    port = free_port()
    # The server reports its answers through a pipe: writes to a file, even on tmpfs,
    # would count as the app's disk bytes.
    log, log_w = os.pipe()
    os.set_blocking(log, False)
    env = {
        **os.environ,
        "BENCH_DEST": str(dest),
        "TMPDIR": str(tmp),
        "BENCH_APP": f"benchmarks.frameworks.{framework.module}:{factory}",
        "BENCH_LOG_FD": str(log_w),
    }
    process = subprocess.Popen(
        server_command(framework, port), cwd=ROOT, env=env, pass_fds=(log_w,)
    )
    os.close(log_w)
    try:
        wait_for_port(port, process)
        # One request first: a pre-fork worker exists and has loaded the app when
        # measuring starts.
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60).close()
        yield Target(port, process_tree(process.pid), log)
    finally:
        stop(process)
        os.close(log)
        for folder in (dest, tmp):
            shutil.rmtree(folder, ignore_errors=True)


def _read_log(fd: int) -> str:
    out = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            out += chunk
    return out.decode()


def upload(target: Target, path: str, field: str, file: Path, work: Path) -> Run:
    """Send ``file`` once with ``curl -F``; what it cost the server and what it answered."""
    answer = work / "answer"
    _read_log(target.log)  # what earlier requests left
    os.sync()
    written, cpu = write_bytes(target.pids), cpu_seconds(target.pids)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                str(answer),
                "-w",
                "%{http_code} %{size_upload}",
                "-H",
                "Expect:",
                "-F",
                f"{field}=@{file}",
                f"http://127.0.0.1:{target.port}{path}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        written, cpu = write_bytes(target.pids) - written, cpu_seconds(target.pids) - cpu
        rss = peak_rss(target.pids[-1])  # the worker, or uvicorn itself
        code, _, sent = done.stdout.partition(" ")
        served = _read_log(target.log).split()[-2:]  # "<status> <bytes read>" of the answer
        status, app_read = (int(served[0]), int(served[1])) if served else (0, None)
        body = answer.read_text(errors="replace") if answer.exists() else ""
        return Run(
            status,
            int(code or 0),
            body + done.stderr,
            seconds,
            written,
            cpu,
            rss,
            app_read,
            int(float(sent or 0)),
        )
    finally:
        answer.unlink(missing_ok=True)


def make_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 * MiB))
            digest.update(chunk)
            file.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def make_image(path: Path) -> tuple[int, int]:
    """A PNG of noise, 800 x 800 (about 1.9 MB: noise does not compress); its size."""
    from PIL import Image

    size = (800, 800)
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path, "PNG")
    return size


def _check(run: Run, what: str, *expect: int, cut_off: bool = False) -> None:
    """The server answered one of ``expect``, and curl read it (unless ``cut_off`` is
    allowed: a server may close a connection it refused while curl is still sending)."""
    if run.status not in expect or run.client_status not in {run.status, *([0] if cut_off else [])}:
        raise RuntimeError(
            f"{what}: the server answered {run.status}, curl read {run.client_status}, "
            f"not {expect}: {run.answer[:300]!r}"
        )


def measure(framework: Framework, sizes: Sizes, work: Path) -> dict[str, dict[str, list[Run]]]:
    """Every case for both apps of ``framework``: ``{case: {"native"|"spoolup": runs}}``."""
    backup = work / "backup.bin"
    digest = make_random_file(backup, sizes.backup)
    image = work / "image.png"
    width, height = make_image(image)
    junk = work / "junk.bin"
    make_random_file(junk, sizes.junk)
    apps = {"native": framework.native, "spoolup": framework.spoolup}
    results: dict[str, dict[str, list[Run]]] = {"backup": {}, "image": {}, "junk": {}}
    try:
        for round_ in range(sizes.runs):
            for kind, factory in apps.items():
                # A fresh server per round: its peak RSS is the backup's. The small cases
                # follow the first round's backup on the same server.
                with serving(framework, factory, work) as target:
                    run = upload(target, "/backup", "file", backup, work)
                    _check(run, f"{framework.name} {kind} backup", 200, 201)
                    if json.loads(run.answer).get("sha256") != digest:
                        raise RuntimeError(f"{framework.name} {kind}: wrong sha256 {run.answer!r}")
                    results["backup"].setdefault(kind, []).append(run)
                    if round_:
                        continue
                    run = upload(target, "/image", "image", image, work)
                    _check(run, f"{framework.name} {kind} image", 200, 201)
                    if json.loads(run.answer) != {"width": width, "height": height}:
                        raise RuntimeError(f"{framework.name} {kind}: wrong image {run.answer!r}")
                    results["image"][kind] = [run]
                    run = upload(target, "/limited", "file", junk, work)
                    _check(run, f"{framework.name} {kind} junk", 413, cut_off=True)
                    results["junk"][kind] = [run]
    finally:
        for path in (backup, image, junk):
            path.unlink(missing_ok=True)
    return results


def tables(results: dict[str, dict[str, dict[str, list[Run]]]], sizes: Sizes) -> list[Table]:
    """The backup table (with ratios), and the image and junk table."""
    big = Table(
        f"{sizes.backup // MiB} MiB backup, kept with its sha256 (POST /backup)",
        [
            "framework",
            "app",
            "MB/s (best)",
            "MB/s (median)",
            "spoolup / native",
            "server CPU s/GiB",
            "disk bytes / byte",
            "peak RSS MiB",
            "RSS - native MiB",
        ],
    )
    small = Table(
        "1.9 MB image checked in memory (POST /image); "
        f"{sizes.junk / MB:.0f} MB of junk over a 2 MB limit (POST /limited)",
        [
            "framework",
            "app",
            "image disk bytes / byte",
            "junk status",
            "junk bytes read by the app",
            "junk bytes curl sent",
            "junk answer s",
        ],
    )
    for name, cases in results.items():
        rates = {
            kind: [sizes.backup / r.seconds for r in runs] for kind, runs in cases["backup"].items()
        }
        native_rss = max(r.peak_rss for r in cases["backup"]["native"])
        for kind, runs in cases["backup"].items():
            ratio = median(rates[kind]) / median(rates["native"])
            rss = max(r.peak_rss for r in runs)
            big.add(
                name,
                kind,
                f"{max(rates[kind]) / 1e6:.0f}",
                f"{median(rates[kind]) / 1e6:.0f}",
                f"{ratio:.2f}x",
                f"{median([r.cpu for r in runs]) * 1024 * MiB / sizes.backup:.2f}",
                f"{max(r.written for r in runs) / sizes.backup:.2f}",
                f"{rss / MiB:.0f}",
                f"{(rss - native_rss) / MiB:+.0f}",
            )
        for kind in cases["image"]:
            image, junk = cases["image"][kind][0], cases["junk"][kind][0]
            read = "-" if junk.app_read is None else f"{junk.app_read:,}"
            small.add(
                name,
                kind,
                f"{image.written / (image.sent or 1):.2f}",
                str(junk.status) + ("" if junk.client_status else " (curl cut off)"),
                read,
                f"{junk.sent:,}",
                f"{junk.seconds:.2f}",
            )
    big.notes += [
        "MB/s: 10**6 bytes of file per second of curl's whole request; spoolup / native: "
        "the ratio of the medians.",
        "server CPU: user + system seconds of the server's processes during the upload "
        "(median), per GiB; curl's own CPU is not counted.",
        "disk bytes / byte: write_bytes (/proc/<pid>/io) of the server's processes during "
        "the upload over the file size; a temp file counts even if deleted before writeback.",
        "peak RSS: VmHWM of the process running the app (uvicorn, or the gunicorn worker); "
        "a fresh server per backup.",
        "spoolup's save() fsyncs the kept file before the answer; the native apps do not "
        "(nor does Django's FileSystemStorage.save, which the Django spoolup apps use).",
        "Targets (issue 9): spoolup >= 1.5x native, 1.0 disk byte per byte, "
        "peak RSS within 16 MiB of native.",
    ]
    small.notes += [
        "image disk bytes / byte: write_bytes over the bytes curl sent (target for spoolup: 0).",
        "junk bytes read by the app: the body bytes the app had received when it answered "
        "(counted between the server and the app); target: under 1 MB. curl sent: what left "
        "curl before it saw the answer or the server closed (socket buffers hold some).",
    ]
    return [big, small]


def run(quick: bool) -> list[Table]:
    """Measure every framework in ``FRAMEWORKS``."""
    if shutil.which("curl") is None:
        raise RuntimeError("the framework benchmark needs curl (apt-get install curl)")
    sizes = QUICK if quick else FULL
    # BENCH_FRAMEWORKS="Django WSGI,Django ASGI" measures only those rows.
    chosen = [n.strip() for n in os.environ.get("BENCH_FRAMEWORKS", "").split(",") if n.strip()]
    frameworks = [f for f in FRAMEWORKS if not chosen or f.name in chosen]
    results = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-frameworks-", dir=ROOT) as folder:
        for framework in frameworks:
            print(f"-- {framework.name}", flush=True)
            results[framework.name] = measure(framework, sizes, Path(folder))
            loads.append(os.getloadavg()[0])
    out = tables(results, sizes)
    out[0].notes.append(
        f"load average (1 min) before and after each framework: "
        f"{', '.join(f'{x:.2f}' for x in loads)} on {os.cpu_count()} logical cores "
        "(curl and the server share them)."
    )
    return out
