"""What ``/healthz`` checks: the storage answers in time, and there is room for uploads.

The storage is asked for one entry of its ``files/`` listing (a folder listing locally;
on S3 a ``ListObjectsV2``, which needs the bucket reachable, the credentials valid and
the listing allowed). A store that hangs (a frozen or black-holed S3 endpoint) would
hold the question for boto3's timeouts and retries, minutes: :class:`StorageProbe`
answers "unavailable" after :data:`STORAGE_TIMEOUT` seconds instead, and keeps at most
one question in flight, so that repeated health checks during an outage never pile up
worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable

from spoolup.storage.base import Storage
from spoolup.storage.local import LocalStorage

__all__ = ["STORAGE_TIMEOUT", "StorageProbe", "space_problem"]

STORAGE_TIMEOUT = 5.0
"""Seconds the storage has to answer a health check."""

logger = logging.getLogger("spoolup.server")


class StorageProbe:
    """Runs ``check`` for ``/healthz``: one at a time, within ``timeout`` seconds."""

    def __init__(
        self, check: Callable[[], Awaitable[None]], timeout: float = STORAGE_TIMEOUT
    ) -> None:
        self.check = check
        self.timeout = timeout
        self._pending: asyncio.Future[None] | None = None

    async def problem(self) -> str | None:
        """Why the storage is unavailable, or ``None`` when it answered in time."""
        pending = self._pending
        if pending is None or pending.done():
            pending = self._pending = asyncio.ensure_future(self.check())
            # Its error is read here or below, never left unretrieved.
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            await asyncio.wait_for(asyncio.shield(pending), self.timeout)
        except TimeoutError:
            logger.warning("health check: the storage did not answer in %g s", self.timeout)
            return f"the storage did not answer within {self.timeout:g} s"
        except Exception as exc:  # any failure of the store is a 503
            logger.warning("health check failed: %s", exc)
            return "the storage does not answer"
        return None


def _free(folder: str) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def space_problem(storage: Storage, min_free: int) -> str | None:
    """Why uploads would fail for lack of room, or ``None`` when there is enough.

    The storage folder (local storage only: S3 has no free space to ask for) and the
    temp folder (where checksummed tus chunks wait) must each have ``min_free`` bytes
    free. The message names neither folder: clients never see the server's paths.
    """
    folders = [("the temp folder", tempfile.gettempdir())]
    if isinstance(storage, LocalStorage):
        folders.insert(0, ("the storage", str(storage.root)))
    for name, folder in folders:
        try:
            free = _free(folder)
        except OSError:
            return f"{name} cannot be checked"
        if free < min_free:
            return f"{name} is full: {free} bytes free, {min_free} needed to take uploads"
    return None
