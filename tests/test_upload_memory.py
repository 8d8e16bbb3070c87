"""Memory per upload when many arrive at once and the storage is the slow side.

An async driver holds what it receives while a worker thread is busy with the batch
before (``spoolup._io.BATCH_SIZE`` and ``READ_AHEAD``): with slow storage that is
its steady state, so this bound times the uploads is what a server holds.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator

import spoolup
from spoolup.handlers import UploadHandler

KiB = 1024
MiB = 1024 * KiB
_BOUNDARY = "memoryboundary"


class _SlowDisk(UploadHandler):
    """Takes each chunk like a slow disk would, and keeps nothing."""

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        time.sleep(0.001)
        return None


async def _body(size: int) -> AsyncIterator[bytes]:
    yield (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for _ in range(size // (64 * KiB)):
        yield bytes(64 * KiB)  # a fresh chunk, as a server receives them
        await asyncio.sleep(0)
    yield f"\r\n--{_BOUNDARY}--\r\n".encode()


async def _upload(size: int) -> None:
    form = await spoolup.aparse_form(
        _body(size), f"multipart/form-data; boundary={_BOUNDARY}", handlers=[_SlowDisk]
    )
    form.close()


def test_many_uploads_at_once_hold_about_a_mebibyte_each() -> None:
    uploads = 24
    tracemalloc.start()
    try:
        asyncio.run(_upload(MiB))  # warm-up: the pools and the parser exist
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

        async def all_at_once() -> None:
            await asyncio.gather(*(_upload(6 * MiB) for _ in range(uploads)))

        asyncio.run(all_at_once())
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # With 1 MiB batches and 2 MiB read ahead each upload held about 3 MiB here.
    assert peak < uploads * 2 * MiB, f"{peak / uploads / MiB:.2f} MiB per upload"
