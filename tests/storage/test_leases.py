"""HeldLeases: the leases of a process's streamed writes, renewed in the background."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from spoolup.storage.leases import HeldLeases, Lease, UploadLock


class _SlowStore(UploadLock):
    """Leases in memory; each renewal takes ``latency`` seconds, as over a slow S3."""

    def __init__(self, ttl: float, latency: float) -> None:
        super().__init__(ttl)
        self.latency = latency
        self.lapsed: list[str] = []  # renewals that came after the lease ran out
        self.renewals: dict[str, int] = {}
        self._mutex = threading.Lock()

    def acquire(self, upload_id: str, owner: str) -> Lease | None:
        return Lease(upload_id, owner, 1, self.clock() + self.ttl, False, "t")

    def renew(self, lease: Lease) -> Lease:
        time.sleep(self.latency)
        now = self.clock()
        with self._mutex:
            if now > lease.until:
                self.lapsed.append(lease.upload_id)
            self.renewals[lease.upload_id] = self.renewals.get(lease.upload_id, 0) + 1
        return replace(lease, until=now + self.ttl)

    def release(self, lease: Lease) -> None:
        pass

    def discard(self, upload_id: str) -> None:
        pass


@pytest.mark.slow
def test_many_leases_over_a_slow_store_are_renewed_before_they_run_out() -> None:
    # 40 writes at once, 0.2 s a renewal: one after the other, a round takes 8 s, well
    # past the 3 s lease, and another server's sweep would abort live writes.
    store = _SlowStore(ttl=3.0, latency=0.2)
    held = HeldLeases(store)
    names = [f"write-{n}" for n in range(40)]
    for name in names:
        held.take(name)
    deadline = time.monotonic() + 60
    while min(store.renewals.get(name, 0) for name in names) < 2:
        assert time.monotonic() < deadline, store.renewals
        time.sleep(0.05)
    for name in names:
        held.drop(name)
    assert store.lapsed == []
