"""Streamed S3 writes at once share the process's part buffers, on a real SeaweedFS.

Measured by counting the pool's buffers (bytes alive, spares lent) and the parts in
flight, not by time: every write holds one part of its own, the others are lent under
the budget, and writes past the budget wait for their own parts and still finish.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from spoolup._part_buffers import PartBuffers
from spoolup.storage.s3 import S3Storage

pytestmark = [pytest.mark.s3, pytest.mark.slow]

MiB = 1024 * 1024


class _Watched:
    """Wraps the storage's ``upload_part``: the pool's bytes alive and the parts in
    flight per key, at their most."""

    def __init__(self, storage: S3Storage, pool: PartBuffers) -> None:
        self.real = storage.upload_part
        self.pool = pool
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.most_in_flight: Counter[str] = Counter()
        self.most_live = 0

    def __call__(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> Any:
        with self.lock:
            self.in_flight[key] += 1
            self.most_in_flight[key] = max(self.most_in_flight[key], self.in_flight[key])
            self.most_live = max(self.most_live, self.pool.live)
        try:
            return self.real(key, upload_id, number, data)
        finally:
            with self.lock:
                self.in_flight[key] -= 1


def _write_all(storage: S3Storage, writes: int, size: int) -> dict[str, bytes]:
    """``writes`` objects of ``size`` bytes written at once, 1 MiB per chunk; their data."""
    objects = {f"w{i}": random.Random(i).randbytes(size) for i in range(writes)}

    def write(key: str) -> None:
        data = objects[key]
        with storage.open_writer(key) as writer:
            for start in range(0, size, MiB):
                writer.write(data[start : start + MiB])
            info = writer.commit()
        assert info.sha256 == hashlib.sha256(data).hexdigest()

    with ThreadPoolExecutor(writes) as threads:
        running = [threads.submit(write, key) for key in objects]
        for future in running:
            future.result(timeout=600)  # a deadlock fails here, not by hanging the run
    return objects


def _check_stored(storage: S3Storage, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        assert hashlib.sha256(storage.read_bytes(key)).digest() == hashlib.sha256(data).digest()


def test_writes_at_once_borrow_parts_only_under_the_budget(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    part = s3_storage.part_size
    writes = 4
    pool = PartBuffers(6 * part)
    s3_storage.part_buffers = pool
    monkeypatch.setattr(s3_storage, "concurrency", 4)
    watched = _Watched(s3_storage, pool)
    monkeypatch.setattr(s3_storage, "upload_part", watched)
    objects = _write_all(s3_storage, writes, 3 * part + MiB)
    # Unbounded, each write could hold its part and 4 in flight: 20 parts here.
    assert pool.peak <= pool.budget + writes * part
    assert watched.most_live <= pool.budget + writes * part
    assert max(watched.most_in_flight.values()) <= 4
    # Every buffer went back: what is alive now is kept for reuse, no more.
    assert pool.live <= pool.idle
    _check_stored(s3_storage, objects)


def test_writes_past_the_budget_all_finish_with_one_part_each(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    part = s3_storage.part_size
    writes = 8
    pool = PartBuffers(0)  # nothing to lend: every write has only its own part
    s3_storage.part_buffers = pool
    monkeypatch.setattr(s3_storage, "concurrency", 4)
    watched = _Watched(s3_storage, pool)
    monkeypatch.setattr(s3_storage, "upload_part", watched)
    objects = _write_all(s3_storage, writes, 2 * part + MiB)
    assert pool.spared == 0
    assert pool.peak <= writes * part
    # Each write waited for its part to be sent before filling the next one.
    assert set(watched.most_in_flight.values()) == {1}
    assert len(watched.most_in_flight) == writes
    assert pool.live == 0
    _check_stored(s3_storage, objects)
