"""Write leases on tus uploads: at most one writer per upload, across every server.

A PATCH (or a creation with a body, a concatenation, a termination) first takes the
upload's lease with :meth:`UploadLock.acquire`. The lease is short (``ttl``, 3 s by
default) and a :class:`LeaseKeeper` renews it in the background for as long as the
request lives, so a server killed with ``kill -9`` blocks its uploads for at most
about ``ttl`` seconds. Every write is fenced: :meth:`LeaseKeeper.check` runs just before
each write and raises :class:`LeaseLost` (423) once the lease is gone, including after
the whole process stalled (a ``SIGSTOP``, a swap storm, a paused VM) past the lease and
another server took the upload over meanwhile.

The lease lives where the uploads do, written with the store's compare-and-swap:

- :class:`ObjectLock` over S3 (``<prefix>tus/<id>/lock``): conditional ``PutObject``
  (``If-None-Match: *`` to create, ``If-Match: <etag>`` to renew or take over, never a
  blind write), so of two servers racing for a lease exactly one wins, and a renewal
  fails as soon as anyone else has taken the lease over. SeaweedFS (4.x), AWS S3,
  MinIO and R2 honour these headers; the first acquire checks that the store does
  (:class:`ConditionalWritesUnsupported` if it quietly ignores them).
- :class:`ObjectLock` over local storage (``<root>/.tus-leases/<id>.lock``): the same
  records in small files, the compare-and-swap made atomic with ``flock`` (servers on
  one machine, or one NFSv4 mount).
- :class:`RedisLock` (``--lock redis://host:6379/0``): for stores without conditional
  writes, or to keep lease traffic off the object store at scale; leases are keys
  with a time to live, renewed and released only by the token that took them.

Clocks: a lease record holds the wall-clock time it runs out (``until``), which other
servers compare with their own clocks; the holder itself stops writing half a lease
after its last successful renewal by its monotonic clock, so clocks may differ by up
to ``ttl / 2`` (keep them in sync with NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from spoolup.storage.errors import StorageError
from spoolup.storage.leases import (
    DEFAULT_TTL,
    ConditionalWritesUnsupported,
    Lease,
    LeaseLost,
    ObjectLock,
    UploadLock,
    _FileCells,
    _S3Cells,
)

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "DEFAULT_TTL",
    "ConditionalWritesUnsupported",
    "Lease",
    "LeaseKeeper",
    "LeaseLost",
    "ObjectLock",
    "RedisLock",
    "UploadLock",
    "lock_for",
]


class RedisLock(UploadLock):
    """Leases as Redis/Valkey keys with a time to live (``redis://host:port/db``).

    ``SET key token NX PX ttl`` takes a free lease; renewal and release run a short
    server-side script that acts only while the key still holds our token, so a lease
    taken over by another server cannot be extended or removed by the old holder. A
    per-upload counter (``INCR``) numbers the leases. Needs the ``redis`` package.
    """

    _RENEW = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then "
        "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
    )
    # With a second key, a release also records the generation let go, so that the
    # next holder knows the lease was released (not lapsed mid-write).
    _RELEASE = (
        "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
        "redis.call('del', KEYS[1]) "
        "if KEYS[2] then redis.call('set', KEYS[2], ARGV[2], 'px', ARGV[3]) end "
        "return 1"
    )
    _KEEP_MS = 7 * 24 * 3600 * 1000

    def __init__(
        self,
        url: str,
        ttl: float = DEFAULT_TTL,
        *,
        prefix: str = "spoolup:tus:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(ttl, clock=clock)
        import redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=max(ttl / 2, 0.5), decode_responses=True
        )
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self.prefix = prefix
        self._renew = self._redis.register_script(self._RENEW)
        self._release = self._redis.register_script(self._RELEASE)

    def _key(self, upload_id: str) -> str:
        return f"{self.prefix}{upload_id}:lease"

    def _released_key(self, upload_id: str) -> str:
        return f"{self.prefix}{upload_id}:released"

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            msg = f"Redis {what} of a tus lease failed: {exc}"
            raise StorageError(msg) from exc

    def acquire(self, upload_id: str, owner: str) -> Lease | None:
        """``SET NX PX``; ``None`` while another token holds the key."""
        ms = int(self.ttl * 1000)
        key = self._key(upload_id)
        with self._guard("acquire"):
            current = self._redis.get(key)
            if current is not None and str(current).split(" ", 1)[0] == owner:
                # Our own server's leftover: take it afresh.
                self._release(keys=[key], args=[current])
            token = f"{owner} {secrets.token_hex(8)}"
            until = self.clock() + self.ttl
            if not self._redis.set(key, token, nx=True, px=ms):
                return None
            counter = f"{self.prefix}{upload_id}:gen"
            generation = int(self._redis.incr(counter))
            self._redis.pexpire(counter, self._KEEP_MS)
            released = self._redis.get(self._released_key(upload_id))
        # The key expires on its own when its holder dies; a release records the
        # generation it let go, so only a lease that lapsed counts as a takeover.
        taken_over = generation > 1 and str(released) != str(generation - 1)
        return Lease(upload_id, owner, generation, until, taken_over, token)

    def renew(self, lease: Lease) -> Lease:
        """``PEXPIRE`` if the key still holds our token; :class:`LeaseLost` otherwise."""
        until = self.clock() + self.ttl
        with self._guard("renewal"):
            key = self._key(lease.upload_id)
            done = self._renew(keys=[key], args=[lease.token, int(self.ttl * 1000)])
        if not done:
            msg = "the write lease on this upload was lost to another server"
            raise LeaseLost(msg)
        return replace(lease, until=until)

    def release(self, lease: Lease) -> None:
        """``DEL`` if the key still holds our token, recording the generation released."""
        keys = [self._key(lease.upload_id), self._released_key(lease.upload_id)]
        with self._guard("release"):
            self._release(keys=keys, args=[lease.token, lease.generation, self._KEEP_MS])

    def discard(self, upload_id: str) -> None:
        """Delete the lease and its counter."""
        with self._guard("removal"):
            self._redis.delete(
                self._key(upload_id), f"{self.prefix}{upload_id}:gen", self._released_key(upload_id)
            )


def lock_for(
    store: object,
    url: str | None = None,
    *,
    ttl: float = DEFAULT_TTL,
    clock: Callable[[], float] = time.time,
) -> UploadLock:
    """The lock for a tus store: Redis/Valkey at ``url`` if given, else the store itself.

    ``url`` is ``redis://host:port/db`` (``rediss://`` for TLS, ``valkey://`` alike).
    Without it, leases are kept beside the uploads: files for a folder, conditional
    writes for S3.
    """
    from spoolup.tus.store import TusStore

    if url is not None:
        scheme = url.partition("://")[0].lower()
        if scheme not in {"redis", "rediss", "valkey", "valkeys", "unix"}:
            msg = f"a lock URL is redis://host:port/db (or rediss://, unix://), not {url!r}"
            raise ValueError(msg)
        if scheme.startswith("valkey"):
            url = "redis" + url[len("valkey") :]
        return RedisLock(url, ttl, clock=clock)
    if isinstance(store, TusStore):
        from spoolup.storage.local import LocalStorage
        from spoolup.storage.s3 import S3Storage

        backend = store.storage
        if isinstance(backend, S3Storage):
            s3 = backend

            def key_of(name: str) -> str:
                if name.startswith(".probe-"):
                    return f"{s3.prefix}{store.prefix}{name}"
                return s3.prefix + store.key(name, "lock")

            return ObjectLock(_S3Cells(s3.client, s3.bucket, key_of), ttl, clock=clock)
        if isinstance(backend, LocalStorage):
            # A dot folder: never a key, skipped by listings.
            return ObjectLock(_FileCells(backend.root / ".tus-leases", ".lock"), ttl, clock=clock)
    msg = f"no lease store for {type(store).__name__}: pass a lock"
    raise TypeError(msg)


class LeaseKeeper:
    """Holds one lease for one request: renews it in the background, fences each write.

    Use as ``async with LeaseKeeper(lock, lease): ...``; on leaving, the background
    renewal stops and the lease is released (unless it was lost, or ``release`` is
    false because the work removed it). Call :meth:`check`
    (blocking, from the writing thread) right before each write and before saving
    state: it renews the lease first once half of it has gone by, and raises
    :class:`LeaseLost` if the lease is lost.
    """

    def __init__(
        self,
        lock: UploadLock,
        lease: Lease,
        *,
        release: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = lock
        self.lease = lease
        self.lost = False
        self.release = release
        self.parked: Lease | None = None
        self._monotonic = monotonic
        self._mutex = threading.Lock()
        self._renew_at = monotonic() + lock.ttl / 2
        self._task: asyncio.Task[None] | None = None

    @property
    def taken_over(self) -> bool:
        """Whether this lease was taken from a holder that never released it."""
        return self.lease.taken_over

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is held for at least ``ttl / 2`` more."""
        with self._mutex:
            if self.lost:
                msg = "the write lease on this upload was lost to another server"
                raise LeaseLost(msg)
            if self._monotonic() >= self._renew_at:
                self._renew()

    def _renew(self) -> None:
        started = self._monotonic()
        try:
            self.lease = self.lock.renew(self.lease)
        except LeaseLost:
            self.lost = True
            raise
        # Counted from before the request: the others' clocks started no earlier.
        self._renew_at = started + self.lock.ttl / 2

    def _renew_quietly(self) -> None:
        with self._mutex, contextlib.suppress(LeaseLost, StorageError):
            if not self.lost and self._monotonic() >= self._renew_at:
                self._renew()

    async def _keep(self) -> None:
        while not self.lost:
            await asyncio.sleep(max(self._renew_at - self._monotonic(), 0.0) + 0.01)
            await asyncio.to_thread(self._renew_quietly)

    async def __aenter__(self) -> LeaseKeeper:
        self._task = asyncio.get_running_loop().create_task(self._keep())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.release and not self.lost:
            await asyncio.shield(asyncio.to_thread(self._release))

    def _release(self) -> None:
        with self._mutex, contextlib.suppress(StorageError):
            self.lock.release(self.lease)

    def park(self) -> Lease | None:
        """Park the lease (see :meth:`UploadLock.park`); the parked lease, or ``None``.

        Also from the writing thread right after the request's last write: the keeper
        then holds nothing (:meth:`check` raises, no renewal, no release on leaving)
        and :attr:`parked` keeps what this returned.
        """
        with self._mutex:
            if self.lost:
                return None
            self.lost = True  # nothing is written past this point
            try:
                self.parked = self.lock.park(self.lease)
            except StorageError:
                self.parked = None
            return self.parked
