"""The server's leftover sweep: what crashes and outages left in storage, removed.

At start and every ``sweep_interval`` seconds, in a worker thread:

- local storage: temp files of writers that died (``kill -9``), whatever their age, and
  older leftovers nobody can vouch for (:meth:`~spoolup.storage.LocalStorage.cleanup`);
  resumable upload folders older than the tus expiry that no tus upload records (a
  crash between starting one and recording it:
  :meth:`~spoolup.storage.LocalStorage.cleanup_uploads`);
- S3: multipart uploads whose abort failed while the store was down, those of
  writes whose server died (their write lease ran out: every server leases its
  streamed writes, see :meth:`~spoolup.storage.s3.S3Storage.own_writes`), and
  incomplete uploads older than the tus expiry that no live tus upload holds
  (:meth:`~spoolup.storage.s3.S3Storage.cleanup`);
- both: the markers of upload links that have expired (:func:`sweep_link_markers`).

A failing sweep is logged and tried again after a growing pause (:func:`repeat`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING

from spoolup._periodic import repeat
from spoolup.server.share import sweep_link_markers
from spoolup.storage.local import LocalStorage
from spoolup.tus.state import StateError

if TYPE_CHECKING:
    from spoolup.storage.base import Storage
    from spoolup.tus.store import TusStore

__all__ = ["LeftoverSweeper"]

logger = logging.getLogger("spoolup.server")


class LeftoverSweeper:
    """Sweeps ``storage`` (see the module docstring); ``tus`` names the live uploads.

    ``write_lease`` (seconds) leases this server's streamed S3 writes, so that every
    server's sweep aborts them once it runs out after a crash.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        tus: TusStore | None,
        orphan_age: float,
        interval: float,
        write_lease: float | None = None,
    ) -> None:
        self.storage = storage
        self.tus = tus
        self.orphan_age = orphan_age
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        s3 = sys.modules.get("spoolup.storage.s3")
        if write_lease is not None and s3 is not None and isinstance(storage, s3.S3Storage):
            storage.own_writes(write_lease)

    def sweep(self) -> int:
        """Sweep once (blocking); return how many leftovers were removed."""
        removed = 0
        if isinstance(self.storage, LocalStorage):
            removed = self.storage.cleanup()
            removed += self.storage.cleanup_uploads(self.orphan_age, keep=self._live_multipart())
        else:
            s3 = sys.modules.get("spoolup.storage.s3")
            if s3 is not None and isinstance(self.storage, s3.S3Storage):
                removed = self.storage.cleanup(self.orphan_age, keep=self._live_multipart())
        removed += sweep_link_markers(self.storage, time.time())
        if removed:
            logger.info("the storage sweep removed %d leftovers", removed)
        return removed

    def _live_multipart(self) -> set[str]:
        """The multipart upload ids that live tus uploads hold."""
        live: set[str] = set()
        if self.tus is None:
            return live
        for upload_id in self.tus.ids():
            try:
                info = self.tus.load(upload_id)
            except StateError:  # unreadable: a lost upload (410), live no more
                continue
            mpu = info.backend.get("mpu") if info is not None else None
            if isinstance(mpu, str):
                live.add(mpu)
        return live

    def start(self) -> None:
        """Sweep now and then every ``interval`` seconds, in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                repeat(
                    lambda: asyncio.to_thread(self.sweep),
                    self.interval,
                    what="the storage sweep",
                    logger=logger,
                )
            )

    async def aclose(self) -> None:
        """Stop sweeping (a sweep in its worker thread finishes on its own)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
