"""LocalStorage's writer: buffering, and the background syncs that keep commit short."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import spoolup._io as io_mod
from spoolup.storage import LocalStorage, StorageError

MiB = 1024 * 1024


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_mixed_chunk_sizes_are_written_in_order(tmp_path: Path) -> None:
    rng = random.Random(3)
    chunks = [
        rng.randbytes(rng.choice([1, 1000, 70_000, 200_000, 300_000, 2 * MiB])) for _ in range(60)
    ]
    storage = LocalStorage(tmp_path)
    with storage.open_writer("mixed") as writer:
        for chunk in chunks:
            writer.write(chunk)
        info = writer.commit()
    data = b"".join(chunks)
    assert storage.read_bytes("mixed") == data
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_full_buffers_are_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    storage = LocalStorage(tmp_path)
    with storage.open_writer("odd") as writer:
        for _ in range(60):
            writer.write(b"z" * 50_001)
        writer.commit()
    assert storage.read_bytes("odd") == b"z" * 3_000_060
    assert sizes[:3] == [MiB, MiB, 3_000_060 - 2 * MiB]  # then the sidecar


def test_large_chunks_are_written_as_they_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    storage = LocalStorage(tmp_path)
    with storage.open_writer("large") as writer:
        writer.write(b"a" * 1000)
        writer.write(b"b" * 65536)
        writer.write(b"c" * 300_000)
        writer.write(b"d" * 10)
        writer.commit()
    assert storage.read_bytes("large") == b"a" * 1000 + b"b" * 65536 + b"c" * 300_000 + b"d" * 10
    assert sizes[:4] == [1000, 65536, 300_000, 10]


def test_large_files_are_synced_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[str, int]] = []
    fsynced: list[int] = []
    real_fsync = os.fsync

    def fake_fdatasync(fd: int) -> None:
        synced.append((threading.current_thread().name, os.fstat(fd).st_size))

    def counting_fsync(fd: int) -> None:
        fsynced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(io_mod, "SYNC_EVERY", 2 * MiB)
    monkeypatch.setattr(io_mod, "start_writeback", fake_fdatasync)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    storage = LocalStorage(tmp_path)
    chunk = random.Random(4).randbytes(MiB)
    with storage.open_writer("big") as writer:
        for _ in range(12):
            writer.write(chunk)
        writer.commit()
    assert storage.read_bytes("big") == chunk * 12
    assert synced  # started while writing, off the writing thread
    assert all(name.startswith("spoolup-io") for name, _ in synced)
    assert 12 * MiB in fsynced  # commit still fsyncs the whole file


def test_small_files_start_no_background_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(io_mod, "start_writeback", calls.append)
    storage = LocalStorage(tmp_path)
    storage.write("small", b"s" * (3 * MiB))
    assert calls == []


@pytest.mark.parametrize("fail_at", ["write", "commit"])
def test_a_failed_background_sync_fails_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    def failing_fdatasync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(io_mod, "SYNC_EVERY", MiB)
    monkeypatch.setattr(io_mod, "start_writeback", failing_fdatasync)
    storage = LocalStorage(tmp_path)
    chunk = b"e" * MiB
    writer = storage.open_writer("bad")
    writer.write(chunk)  # starts a sync that fails
    sync = writer._sync._sync  # type: ignore[attr-defined]
    assert sync is not None
    sync.exception(10)
    with pytest.raises(StorageError, match="Input/output error"):  # noqa: PT012
        if fail_at == "write":
            for _ in range(2):
                writer.write(chunk)
        writer.commit()
    assert writer.done
    assert leftovers(tmp_path) == []


def test_abort_waits_for_a_running_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    release = threading.Event()
    seen: list[int] = []

    def slow_fdatasync(fd: int) -> None:
        started.set()
        release.wait(10)
        seen.append(os.fstat(fd).st_size)  # the fd is still open

    monkeypatch.setattr(io_mod, "SYNC_EVERY", MiB)
    monkeypatch.setattr(io_mod, "start_writeback", slow_fdatasync)
    storage = LocalStorage(tmp_path)
    writer = storage.open_writer("gone")
    writer.write(b"a" * MiB)
    assert started.wait(10)
    timer = threading.Timer(0.05, release.set)
    timer.start()
    writer.abort()
    timer.join()
    assert seen == [MiB]
    assert leftovers(tmp_path) == []


def test_abort_cancels_a_sync_not_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy = threading.Event()
    pool = ThreadPoolExecutor(1)
    pool.submit(busy.wait, 10)  # the only sync thread is busy
    calls: list[int] = []
    monkeypatch.setattr(io_mod, "io_pool", lambda: pool)
    monkeypatch.setattr(io_mod, "SYNC_EVERY", MiB)
    monkeypatch.setattr(io_mod, "start_writeback", calls.append)
    try:
        storage = LocalStorage(tmp_path)
        writer = storage.open_writer("gone")
        writer.write(b"a" * MiB)
        writer.abort()
    finally:
        busy.set()
        pool.shutdown()
    assert calls == []
    assert leftovers(tmp_path) == []


def test_no_background_sync_at_interpreter_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()  # submit raises RuntimeError, as during interpreter exit
    monkeypatch.setattr(io_mod, "io_pool", lambda: pool)
    monkeypatch.setattr(io_mod, "SYNC_EVERY", MiB)
    storage = LocalStorage(tmp_path)
    with storage.open_writer("late") as writer:
        for _ in range(3):
            writer.write(b"l" * MiB)
        writer.commit()
    assert storage.read_bytes("late") == b"l" * (3 * MiB)
