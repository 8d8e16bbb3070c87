"""The one I/O layer under the drivers, handlers and backends: sizes, threads, batches.

**Named sizes.** Every buffer size spoolup picks is one of the constants below, so
that a reader sees one number where a choice was made, and changes it in one place.

**One thread policy**, two kinds of work:

- *Leaf work* never waits for other work of this pool: a write, an fsync, a hash of
  a batch, an S3 part upload. It runs in :func:`io_pool`, one process-wide pool
  created on first use (never at import), bounded to :data:`IO_THREADS` threads.
- *Driving work* may wait for leaf work (the parser and handler chain of a request,
  which waits for a temp-file write to start; a storage call). The async drivers and
  the ``a``-prefixed twins run it with :func:`asyncio.to_thread` or
  ``loop.run_in_executor(None, ...)``, in the event loop's default executor.

Keeping the two apart is what makes the pool deadlock-free: a pool full of driving
work, waiting for leaf work queued behind it, cannot happen.

**One batcher.** :class:`Batcher` gathers chunks and hands each batch to a leaf
function in :func:`io_pool`, one batch in flight while the next is gathered, so that
the GIL-holding parser and the GIL-releasing write or hash overlap instead of adding
up, with memory bounded by two batches. Batches run in order, one at a time.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

__all__ = [
    "BATCH_SIZE",
    "COPY_SIZE",
    "DIRECT_WRITE",
    "IO_THREADS",
    "PART_BUDGET",
    "READ_AHEAD",
    "READ_SIZE",
    "STREAM_CHUNK",
    "SYNC_EVERY",
    "TEMP_SYNC_AFTER",
    "WRITE_BATCH",
    "BackgroundSync",
    "Batcher",
    "fdatasync",
    "io_pool",
    "start_writeback",
]

KiB = 1024
MiB = 1024 * KiB

READ_SIZE = 1 * MiB
"""Bytes asked of a file-like source per ``read`` (a request body, a source to store)."""
COPY_SIZE = 1 * MiB
"""Bytes per step of a copy from one file or object to another."""
STREAM_CHUNK = 64 * KiB
"""Bytes per chunk handed to an application (``UploadedFile.chunks``, downloads)."""
BATCH_SIZE = 256 * KiB
"""Bytes gathered before a hop to a worker thread (async drivers, hashing, writers).

A request body holds about a batch in the worker and :data:`READ_AHEAD` being received,
so these two bound a server's memory per upload: 100 uploads at once with 1 MiB and
2 MiB took 2 to 4 MiB each (``benchmarks/bench_load.py``). A hop costs tens of
microseconds, a 256 KiB write or hash several times that: one upload alone is as fast."""
READ_AHEAD = 512 * KiB
"""Bytes an async driver receives while a worker is still busy with a batch (at most)."""
WRITE_BATCH = 2 * MiB
"""Bytes of a temp file written by one system call in the background."""
DIRECT_WRITE = 64 * KiB
"""Chunks at least this large are written as they come; smaller ones are gathered."""
SYNC_EVERY = 16 * MiB
"""Bytes written between two background ``fdatasync`` calls, so a final fsync is quick."""
TEMP_SYNC_AFTER = 512 * MiB
"""Size of a temp file past which it is written back in the background as it grows.

Below it a final fsync is quick anyway (512 MiB took 0.17 to 0.21 s on the benchmark machine,
where the target for ``save()`` of 2 GiB is 0.5 s), and most temp files are read and
deleted, never saved: writing them back while they arrive costs the receiving
throughput (on a 2-core machine, a 256 MiB file went from 1.2 to 0.75 GB/s with it
started at 64 MiB) for nothing."""
IO_THREADS = 16
"""Threads of :func:`io_pool` at most (leaf work: writes, syncs, hashes, part uploads)."""
PART_BUDGET = 64 * MiB
"""Bytes of multipart part buffers a process holds before writes stop borrowing more.

Every streamed S3 write (and tus upload) fills one part of its own (8 MiB by default);
the parts it sends in the background while the next one fills are borrowed from this
budget (:mod:`spoolup._part_buffers`), and a write that finds it used up sends its part
and waits to reuse that buffer. 64 MiB is 8 parts of 8 MiB: one upload alone still has
4 parts in flight, and 8 tus uploads at once on S3 stay under 128 MiB of growth in
all (``benchmarks/results/tus.md``: 108 MiB, against 126 MiB with a 128 MiB budget,
at the same speed); many uploads at once hold about one part each (32 x 64 MiB POSTs:
see ``benchmarks/results/s3_memory.md``, measured with 128 MiB)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def io_pool() -> ThreadPoolExecutor:
    """The process-wide pool for leaf work (see the module notes), made on first use."""
    global _pool  # noqa: PLW0603 - one lazily created pool for the process
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="spoolup-io")
        return _pool


class Batcher:
    """Gathers chunks and hands each batch to ``consume`` in :func:`io_pool`.

    A batch is handed over once it holds ``batch_size`` bytes or ``max_chunks`` chunks;
    one batch is consumed at a time, in order, while the next is gathered. An error of
    ``consume`` is raised by the next :meth:`add` or by :meth:`finish`. Data that never
    fills a batch is consumed by :meth:`finish` in the caller's thread: a small stream
    uses no thread at all.

    A pool thread needs the GIL to begin, and a parsing thread gives it up only when
    it blocks or after the 5 ms switch interval, so a batch would wait until the next
    one was gathered and the two would run in turn. With ``wait_start``, :meth:`add`
    waits (GIL released) until the pool thread has begun the batch it handed over.
    """

    __slots__ = (
        "_batch",
        "_batch_size",
        "_consume",
        "_max_chunks",
        "_pending",
        "_size",
        "_started",
    )

    def __init__(
        self,
        consume: Callable[[list[bytes]], object],
        *,
        batch_size: int = BATCH_SIZE,
        max_chunks: int = 1 << 30,
        wait_start: bool = False,
    ) -> None:
        self._consume = consume
        self._batch_size = batch_size
        self._max_chunks = max_chunks
        self._batch: list[bytes] = []
        self._size = 0
        self._pending: Future[object] | None = None
        self._started: threading.Lock | None = None
        if wait_start:
            self._started = threading.Lock()
            self._started.acquire()

    @property
    def threaded(self) -> bool:
        """True once a batch was handed to a pool thread."""
        return self._pending is not None

    def add(self, data: bytes) -> None:
        """Gather ``data``; hand the batch over when it is full."""
        batch = self._batch
        batch.append(data)
        self._size += len(data)
        if self._size >= self._batch_size or len(batch) >= self._max_chunks:
            self._batch = []
            self._size = 0
            self._hand_over(batch)

    def _hand_over(self, batch: list[bytes]) -> None:
        if self._pending is not None:
            self._pending.result()
        started = self._started
        try:
            if started is None:
                self._pending = io_pool().submit(self._consume, batch)
                return
            pending = self._pending = io_pool().submit(self._begin, started, batch)
        except RuntimeError:  # the pool is shut down (interpreter exit): work inline
            self._pending = None
            self._consume(batch)
            return
        # Never wait for a batch that will not start (a pool shut down at exit).
        while not started.acquire(timeout=0.1):
            if pending.done():  # it released the lock, or never ran: hold it again
                started.acquire(blocking=False)
                break

    def _begin(self, started: threading.Lock, batch: list[bytes]) -> object:
        started.release()
        return self._consume(batch)

    def finish(self) -> None:
        """Consume what is left (in the caller's thread) after the batch in flight.

        Raises the error of any batch.
        """
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
        batch, self._batch = self._batch, []
        self._size = 0
        if batch:
            self._consume(batch)

    def cancel(self) -> None:
        """Drop what is gathered and the batch in flight: wait for it if it has started
        (its error ignored), else cancel it."""
        self._batch = []
        self._size = 0
        if self._pending is not None:
            pending, self._pending = self._pending, None
            if not pending.cancel():
                wait([pending])


fdatasync = getattr(os, "fdatasync", os.fsync)
"""``os.fdatasync`` where there is one (Linux), else ``os.fsync``."""

_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range`` from the C library, or ``None`` where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - a libc without it
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_range_sync = _sync_file_range()


def start_writeback(fd: int) -> None:
    """Start writing the file's dirty pages back to disk; on Linux, do not wait for it.

    ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues the writeback and returns: no
    journal commit, no wait for the disk, so the writer is not slowed to the disk's
    pace step by step. It makes nothing durable (that is what the final ``fsync`` is
    for), it only leaves that fsync little to do. Elsewhere it is an ``fdatasync``.
    """
    if _range_sync is None:
        fdatasync(fd)
    elif _range_sync(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class BackgroundSync:
    """Writes a file back to disk in :func:`io_pool` while more of it is written.

    Call :meth:`wrote` after each write: every :data:`SYNC_EVERY` bytes a
    :func:`start_writeback` of the descriptor starts in the pool (one at a time), so
    that the final ``fsync`` before a rename has little left to wait for. It makes
    nothing durable by itself: every durability point calls :meth:`wait`, then a real
    ``fsync`` or ``fdatasync``. :meth:`wait` waits
    for the sync in flight and raises its error; :meth:`cancel` waits, ignoring it.
    The descriptor must stay open until one of them returns. With ``start_after``, no
    sync starts before the file holds that many bytes.
    """

    __slots__ = ("_fd", "_start_after", "_sync", "_unsynced")

    def __init__(self, fd: int, *, start_after: int = 0) -> None:
        self._fd = fd
        self._start_after = start_after
        self._unsynced = 0
        self._sync: Future[None] | None = None

    def wrote(self, size: int) -> None:
        """``size`` more bytes were written; start a sync if enough are pending."""
        self._unsynced += size
        if self._unsynced < self._start_after:
            return
        self._start_after = 0
        if self._unsynced >= SYNC_EVERY and (self._sync is None or self._sync.done()):
            self.wait()  # an error of the previous round is raised here
            self._unsynced = 0
            # At interpreter exit no thread starts: the final fsync then does it all.
            with contextlib.suppress(RuntimeError):
                self._sync = io_pool().submit(start_writeback, self._fd)

    def wait(self) -> None:
        """Wait for the sync in flight; raise its error."""
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.result()

    def cancel(self) -> None:
        """Wait for the sync in flight (unless it has not started), ignoring its error."""
        sync, self._sync = self._sync, None
        if sync is not None and not sync.cancel():
            with contextlib.suppress(OSError):
                sync.result()
