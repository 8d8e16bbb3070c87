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
import fcntl
import hashlib
import json
import os
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoolup.storage.errors import StorageError
from spoolup.tus.protocol import UploadLocked

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

DEFAULT_TTL = 3.0
"""Seconds a lease lasts without renewal: how long a killed server blocks its uploads."""


class LeaseLost(UploadLocked):
    """The request's write lease ran out and another server may hold it now (423).

    Nothing more of the request is written; the client asks ``HEAD`` for the offset
    and continues from there.
    """


class ConditionalWritesUnsupported(StorageError):
    """The object store ignores ``If-None-Match``/``If-Match``: its leases would not exclude.

    Use a store that honours them, or a Redis/Valkey lock (``--lock redis://...``).
    """


@dataclass(frozen=True, slots=True)
class Lease:
    """One holder's right to write one upload until ``until`` (wall clock, seconds).

    Attributes:
        upload_id: the upload.
        owner: the holder (one id per server process).
        generation: one more than the lease it replaced (1 for a free upload); kept
            through renewals.
        until: when the lease runs out for everyone else, by the holder's clock.
        taken_over: the previous holder's lease ran out without being released: it
            may have died mid-write (its last, unsaved bytes are not counted).
        token: what the lock needs to renew or release exactly this lease (an ETag,
            a random value); opaque.
    """

    upload_id: str
    owner: str
    generation: int
    until: float
    taken_over: bool
    token: str


class UploadLock(ABC):
    """Leases on uploads: :meth:`acquire`, :meth:`renew`, :meth:`release`.

    Blocking calls (run them in a worker thread); safe to share between threads.
    """

    def __init__(self, ttl: float = DEFAULT_TTL, *, clock: Callable[[], float] = time.time) -> None:
        if not 0 < ttl <= 3600:
            msg = f"the lease must last between 0 and 3600 seconds, not {ttl}"
            raise ValueError(msg)
        self.ttl = ttl
        self.clock = clock

    @abstractmethod
    def acquire(self, upload_id: str, owner: str) -> Lease | None:
        """Take the lease, or ``None`` while someone else's lease has not run out.

        ``owner`` taking a lease it already holds (a request of the same server that
        ended without releasing) takes it afresh.
        """

    @abstractmethod
    def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` by ``ttl`` from now; :class:`LeaseLost` if it is not held.

        A lease that ran out is renewed as long as nobody took it meanwhile.
        """

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """Give the lease back if it is still held by it; never raises for a lost one."""

    @abstractmethod
    def discard(self, upload_id: str) -> None:
        """Forget any lease on an upload that was deleted, whoever holds it."""

    # Parking (the tus engineer's, for consecutive PATCHes on one server): a parked
    # lease is free for everyone at once, like a released one, but its holder can take
    # it back with one conditional write, and knows then that nobody held it meanwhile.

    def park(self, lease: Lease) -> Lease | None:
        """Give the lease back, free for anyone at once; the parked lease, or ``None``.

        Pass what this returns to :meth:`resume`. By default the lease is released
        and nothing can be resumed.
        """
        self.release(lease)
        return None

    def resume(self, parked: Lease) -> Lease | None:
        """Take a parked lease back if nobody took the upload's lease since; else ``None``.

        A resumed lease proves that no other holder wrote the upload since it was
        parked. Blocking; never raises for a lease that moved on.
        """
        return None


# -- leases as records under compare-and-swap --------------------------------------


class _Conflict(Exception):
    """A conditional write found another version than the one it expected."""


class _Cells(ABC):
    """Small records written only by compare-and-swap, each with a version tag."""

    @abstractmethod
    def read(self, name: str) -> tuple[bytes, str] | None:
        """The record and its tag, or ``None``."""

    @abstractmethod
    def create(self, name: str, body: bytes) -> str:
        """Write a record that must not exist yet; its new tag, or :class:`_Conflict`."""

    @abstractmethod
    def replace(self, name: str, body: bytes, tag: str) -> str:
        """Overwrite the record if its tag is still ``tag``; new tag, or :class:`_Conflict`."""

    @abstractmethod
    def delete(self, name: str, tag: str | None) -> None:
        """Remove the record if its tag is ``tag`` (any tag for ``None``); missing is fine."""

    def check(self) -> None:  # noqa: B027  (only a remote store can ignore conditions)
        """Raise :class:`ConditionalWritesUnsupported` if the store ignores conditions."""


class _FileCells(_Cells):
    """Records as files in one folder; one ``flock`` on the folder makes each step atomic."""

    def __init__(self, folder: Path, suffix: str) -> None:
        self.folder = folder
        self.suffix = suffix

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}{self.suffix}"

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _read(self, name: str) -> tuple[bytes, str] | None:
        try:
            body = self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        return body, hashlib.blake2b(body, digest_size=16).hexdigest()

    def _write(self, name: str, body: bytes) -> str:
        path = self._path(name)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(body)
        tmp.replace(path)
        return hashlib.blake2b(body, digest_size=16).hexdigest()

    def read(self, name: str) -> tuple[bytes, str] | None:
        """Read the file."""
        with self._guard():
            return self._read(name)

    def create(self, name: str, body: bytes) -> str:
        """Write the file unless it exists."""
        with self._guard():
            if self._read(name) is not None:
                raise _Conflict
            return self._write(name, body)

    def replace(self, name: str, body: bytes, tag: str) -> str:
        """Overwrite the file if its content still hashes to ``tag``."""
        with self._guard():
            current = self._read(name)
            if current is None or current[1] != tag:
                raise _Conflict
            return self._write(name, body)

    def delete(self, name: str, tag: str | None) -> None:
        """Unlink the file if its content still hashes to ``tag``."""
        with self._guard():
            current = self._read(name)
            if current is not None and (tag is None or current[1] == tag):
                self._path(name).unlink()


_PRECONDITION = frozenset({"412", "PreconditionFailed", "409", "ConditionalRequestConflict"})
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_UNSUPPORTED = frozenset({"501", "NotImplemented"})


class _S3Cells(_Cells):
    """Records as S3 objects, written with ``If-None-Match: *`` and ``If-Match``."""

    def __init__(self, client: Any, bucket: str, key_of: Callable[[str], str]) -> None:
        self.client = client
        self.bucket = bucket
        self.key_of = key_of
        self._checked = False
        self._check_lock = threading.Lock()

    @contextlib.contextmanager
    def _errors(self, what: str, *, conflict: frozenset[str] = _PRECONDITION) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in conflict or status in conflict:
                raise _Conflict from None
            msg = f"S3 {what} of a tus lease failed: {code}"
            raise StorageError(msg) from exc
        except BotoCoreError as exc:
            msg = f"S3 {what} of a tus lease failed: {exc}"
            raise StorageError(msg) from exc

    def read(self, name: str) -> tuple[bytes, str] | None:
        """GET the object and its ETag."""
        try:
            with self._errors("read", conflict=_MISSING):
                got = self.client.get_object(Bucket=self.bucket, Key=self.key_of(name))
                body: bytes = got["Body"].read()
        except _Conflict:
            return None
        return body, str(got["ETag"])

    def create(self, name: str, body: bytes) -> str:
        """PUT with ``If-None-Match: *``."""
        with self._errors("create"):
            put = self.client.put_object(
                Bucket=self.bucket, Key=self.key_of(name), Body=body, IfNoneMatch="*"
            )
        return str(put["ETag"])

    def replace(self, name: str, body: bytes, tag: str) -> str:
        """PUT with ``If-Match: <tag>`` (a missing object is a conflict too)."""
        with self._errors("renewal", conflict=_PRECONDITION | _MISSING):
            put = self.client.put_object(
                Bucket=self.bucket, Key=self.key_of(name), Body=body, IfMatch=tag
            )
        return str(put["ETag"])

    def delete(self, name: str, tag: str | None) -> None:
        """DELETE with ``If-Match: <tag>``; where the store refuses that, compare first."""
        key = self.key_of(name)
        if tag is None:
            with self._errors("removal", conflict=_MISSING), contextlib.suppress(_Conflict):
                self.client.delete_object(Bucket=self.bucket, Key=key)
            return
        try:
            with self._errors("release", conflict=_PRECONDITION | _MISSING | _UNSUPPORTED):
                self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=tag)
        except _Conflict:
            # A store without conditional deletes: a second's race at worst removes a
            # lease taken in between, which its holder then fails to renew (423).
            current = self.read(name)
            if current is not None and current[1] == tag:
                with self._errors("release", conflict=_MISSING), contextlib.suppress(_Conflict):
                    self.client.delete_object(Bucket=self.bucket, Key=key)

    def check(self) -> None:
        """Once: create a probe object twice with ``If-None-Match: *``; the second must fail."""
        with self._check_lock:
            if self._checked:
                return
            name = f".probe-{secrets.token_hex(8)}"
            try:
                self.create(name, b"1")
                try:
                    self.create(name, b"2")
                except _Conflict:
                    self._checked = True
                    return
            finally:
                self.delete(name, None)
            msg = (
                "the object store ignores conditional writes (If-None-Match), so it cannot "
                "hold tus leases safely: use a Redis or Valkey lock (--lock redis://...)"
            )
            raise ConditionalWritesUnsupported(msg)


class ObjectLock(UploadLock):
    """Leases as small JSON records (owner, generation, until) under compare-and-swap.

    Build one with :func:`lock_for`. A free lease is created only if absent; a lapsed
    or own one is replaced only if unchanged since read; a renewal only if still ours;
    a release deletes the record only if still ours.
    """

    def __init__(
        self, cells: _Cells, ttl: float = DEFAULT_TTL, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(ttl, clock=clock)
        self._cells = cells

    def _record(self, owner: str, generation: int) -> bytes:
        until = self.clock() + self.ttl
        # A random nonce: two records never look alike, so a tag never comes back (ABA).
        record = {"owner": owner, "gen": generation, "until": until, "n": secrets.token_hex(4)}
        return json.dumps(record, separators=(",", ":")).encode()

    @staticmethod
    def _parse(body: bytes) -> tuple[str, int, float] | None:
        try:
            raw = json.loads(body)
            if raw.get("parked"):  # free: taking it over is no takeover
                return "", int(raw["gen"]), 0.0
            return str(raw["owner"]), int(raw["gen"]), float(raw["until"])
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def _lease(self, upload_id: str, body: bytes, tag: str, *, taken_over: bool) -> Lease:
        parsed = self._parse(body)
        assert parsed is not None
        owner, generation, until = parsed
        return Lease(upload_id, owner, generation, until, taken_over, tag)

    def acquire(self, upload_id: str, owner: str) -> Lease | None:
        """Create the record, or replace a lapsed (or own) one; ``None`` if held."""
        self._cells.check()
        current = self._cells.read(upload_id)
        try:
            if current is None:
                body = self._record(owner, 1)
                tag = self._cells.create(upload_id, body)
                return self._lease(upload_id, body, tag, taken_over=False)
            old, old_tag = current
            parsed = self._parse(old)
            generation = 0 if parsed is None else parsed[1]
            mine = parsed is not None and parsed[0] == owner
            if parsed is not None and not mine and parsed[2] > self.clock():
                return None
            body = self._record(owner, generation + 1)
            tag = self._cells.replace(upload_id, body, old_tag)
            parked = parsed is not None and not parsed[0]
            return self._lease(upload_id, body, tag, taken_over=not (mine or parked))
        except _Conflict:
            return None  # someone else was quicker

    def renew(self, lease: Lease) -> Lease:
        """Replace our record, if it is still ours, with one running ``ttl`` from now."""
        body = self._record(lease.owner, lease.generation)
        try:
            tag = self._cells.replace(lease.upload_id, body, lease.token)
        except _Conflict:
            msg = "the write lease on this upload was lost to another server"
            raise LeaseLost(msg) from None
        until = self.clock() + self.ttl
        return replace(lease, until=until, token=tag)

    def release(self, lease: Lease) -> None:
        """Delete our record if it is still ours."""
        self._cells.delete(lease.upload_id, lease.token)

    def park(self, lease: Lease) -> Lease | None:
        """Replace our record, if still ours, with a free one (run out, owner kept aside)."""
        record = {"parked": True, "gen": lease.generation, "n": secrets.token_hex(4)}
        try:
            tag = self._cells.replace(
                lease.upload_id, json.dumps(record, separators=(",", ":")).encode(), lease.token
            )
        except _Conflict:
            return None
        return replace(lease, until=0.0, token=tag)

    def resume(self, parked: Lease) -> Lease | None:
        """Replace the free record we left, if it is still there, with a lease of ours."""
        body = self._record(parked.owner, parked.generation + 1)
        try:
            tag = self._cells.replace(parked.upload_id, body, parked.token)
        except (_Conflict, StorageError):
            return None
        return self._lease(parked.upload_id, body, tag, taken_over=False)

    def discard(self, upload_id: str) -> None:
        """Delete the record whoever holds it."""
        self._cells.delete(upload_id, None)


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
    _RELEASE = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then "
        "return redis.call('del', KEYS[1]) else return 0 end"
    )

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
            self._redis.pexpire(counter, 7 * 24 * 3600 * 1000)
        # The key expires on its own when its holder dies: whether the last one was
        # released or ran out is not recorded, so every lease counts as a takeover.
        return Lease(upload_id, owner, generation, until, True, token)

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
        """``DEL`` if the key still holds our token."""
        with self._guard("release"):
            self._release(keys=[self._key(lease.upload_id)], args=[lease.token])

    def discard(self, upload_id: str) -> None:
        """Delete the lease and its counter."""
        with self._guard("removal"):
            self._redis.delete(self._key(upload_id), f"{self.prefix}{upload_id}:gen")


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
        """After leaving with ``release=False``: park the lease (see :meth:`UploadLock.park`)."""
        with self._mutex:
            if self.lost:
                return None
            try:
                return self.lock.park(self.lease)
            except StorageError:
                return None
