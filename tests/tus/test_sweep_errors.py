"""The expiry sweeper outlives storage errors: it logs, backs off, continues; shutdown is quiet."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from spoolup._periodic import repeat
from spoolup.storage import StorageError
from spoolup.tus import create_tus_app
from spoolup.tus.state import UploadInfo


async def test_sweeper_continues_after_storage_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    app = create_tus_app(tmp_path, expiry=5.0, sweep_interval=0.01, clock=lambda: now[0])
    store = app.store
    store.create(UploadInfo(id="D" * 22, length=3, expires=5.0))
    real_ids = store.ids
    failures = [3]

    def flaky_ids() -> Iterator[str]:
        if failures[0]:
            failures[0] -= 1
            msg = "the storage is down"
            raise StorageError(msg)
        return real_ids()

    store.ids = flaky_ids  # type: ignore[method-assign]
    now[0] = 10.0
    with caplog.at_level(logging.WARNING, logger="spoolup.tus"):
        app._start_sweeper()
        for _ in range(500):
            if store.load("D" * 22) is None:
                break
            await asyncio.sleep(0.01)
        assert store.load("D" * 22) is None, "the sweeper stopped after an error"
        assert failures == [0]
        assert "the storage is down" in caplog.text
        await app.aclose()  # does not raise what the sweep met


async def test_repeat_backs_off_then_recovers() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def job() -> None:
        calls.append(loop.time())
        if len(calls) <= 3:
            msg = "down"
            raise StorageError(msg)

    task = asyncio.create_task(repeat(job, 0.02, what="test", logger=logging.getLogger("t")))
    while len(calls) < 6:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # Pauses grow while it fails (0.04, 0.08, 0.16 at least), and it goes on after.
    for gap, least in zip(gaps, (0.04, 0.08, 0.16), strict=False):
        assert gap >= least * 0.99
