"""Tests for spoolup._io: the batcher that hands chunks to the I/O pool."""

from __future__ import annotations

import errno
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

import spoolup._io
from spoolup._io import Batcher


def test_small_stream_is_consumed_inline_without_a_thread() -> None:
    seen: list[tuple[str, list[bytes]]] = []
    batcher = Batcher(lambda batch: seen.append((threading.current_thread().name, batch)))
    batcher.add(b"a")
    batcher.add(b"b")
    assert not batcher.threaded
    batcher.finish()
    assert seen == [(threading.current_thread().name, [b"a", b"b"])]


def test_batches_are_consumed_in_order_in_the_pool() -> None:
    seen: list[bytes] = []
    threads: set[str] = set()

    def consume(batch: list[bytes]) -> None:
        threads.add(threading.current_thread().name)
        seen.extend(batch)

    batcher = Batcher(consume, batch_size=1000, max_chunks=3)
    chunks = [bytes([i]) * (i * 37 % 700) for i in range(200)]
    for chunk in chunks:
        batcher.add(chunk)
    assert batcher.threaded
    batcher.finish()
    assert seen == chunks
    assert any(name.startswith("spoolup-io") for name in threads)


def test_a_batch_is_being_consumed_when_add_returns() -> None:
    release = threading.Event()
    batcher = Batcher(lambda batch: release.wait(10), batch_size=1000, wait_start=True)
    batcher.add(b"x" * 1500)
    pending = batcher._pending
    # The pool thread has taken the batch (not merely queued it), so the work overlaps
    # whatever the caller does next.
    assert pending is not None
    assert pending.running()
    release.set()
    batcher.finish()


def test_an_error_is_raised_by_the_next_call() -> None:
    def consume(batch: list[bytes]) -> None:
        raise OSError(28, "No space left on device")

    batcher = Batcher(consume, batch_size=10)
    batcher.add(b"x" * 20)
    with pytest.raises(OSError, match="No space left"):
        batcher.add(b"y" * 20)
    batcher = Batcher(consume, batch_size=10)
    batcher.add(b"x" * 20)
    with pytest.raises(OSError, match="No space left"):
        batcher.finish()
    batcher = Batcher(consume, batch_size=10)
    batcher.add(b"x" * 20)
    batcher.cancel()  # the error is ignored: the caller is already cleaning up


def test_a_batch_that_never_starts_does_not_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    class ShutDownPool:
        """A pool shut down at exit: the batch is cancelled, never run."""

        def submit(self, *args: object) -> Future[None]:
            future: Future[None] = Future()
            future.cancel()
            return future

    monkeypatch.setattr(spoolup._io, "io_pool", ShutDownPool)
    batcher = Batcher(lambda batch: None, batch_size=1000, wait_start=True)
    batcher.add(b"x" * 1500)  # returns, although the batch never started
    assert batcher._pending is not None
    assert batcher._pending.cancelled()
    assert batcher._started is not None
    assert batcher._started.locked()


def test_start_writeback_on_a_file_and_its_errors(tmp_path: Path) -> None:
    # Linux: sync_file_range, which does not wait; elsewhere an fdatasync. Either way
    # the data stays readable and a bad descriptor is an OSError, not a silent pass.
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 100_000)
        spoolup._io.start_writeback(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100_000
    with pytest.raises(OSError) as raised:
        spoolup._io.start_writeback(fd)  # closed now
    assert raised.value.errno == errno.EBADF


def test_start_writeback_falls_back_to_fdatasync(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(spoolup._io, "_range_sync", None)
    monkeypatch.setattr(spoolup._io, "fdatasync", calls.append)
    spoolup._io.start_writeback(7)
    assert calls == [7]
