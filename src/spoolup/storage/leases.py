"""Short leases kept as records under compare-and-swap, in the storage itself.

A lease gives one holder (one server process) the right to write one thing (a tus
upload, a streamed S3 multipart upload) until it runs out; the holder renews it while
the work lives, so a holder killed with ``kill -9`` blocks the thing for at most about
one lease, and anyone can tell that its work was abandoned.

- :class:`ObjectLock` keeps each lease as a small JSON record (owner, generation,
  until): over S3 written only with conditional ``PutObject`` (``If-None-Match: *`` to
  create, ``If-Match: <etag>`` to renew or take over), over a folder in files whose
  compare-and-swap is made atomic with ``flock``.
- :class:`HeldLeases` keeps the leases of work that runs in threads (streamed
  writes) renewed by one background thread per process, half a lease at a time.

The tus write lock (:mod:`spoolup.tus.lock`) is built on these.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from spoolup.errors import UploadError
from spoolup.storage.errors import StorageError

__all__ = [
    "DEFAULT_TTL",
    "ConditionalWritesUnsupported",
    "HeldLeases",
    "Lease",
    "LeaseLost",
    "ObjectLock",
    "UploadLock",
]

logger = logging.getLogger("spoolup.storage")

_RENEWERS = 16  # renewals of one process's leases at once

DEFAULT_TTL = 3.0
"""Seconds a lease lasts without renewal: how long a killed server blocks its uploads."""


class LeaseLost(UploadError):
    """The write lease ran out and another server may hold it now (423, Locked).

    Nothing more of the request is written; a tus client asks ``HEAD`` for the offset
    and continues from there.
    """

    status = 423


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
    """Records as files in one folder; one ``flock`` on the folder makes each step atomic.

    A record is rewritten in place under that flock, which every reader takes too, so
    none sees one half written: no temp file and rename per step (a lease is written
    twice per tus PATCH). A record a crash cut short does not parse: a lapsed lease.
    """

    _FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)

    def __init__(self, folder: Path, suffix: str) -> None:
        self.folder = folder
        self.suffix = suffix

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}{self.suffix}"

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    @staticmethod
    def _tag(body: bytes) -> str:
        return hashlib.blake2b(body, digest_size=16).hexdigest()

    @staticmethod
    def _body(fd: int) -> bytes:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks)

    def _open(self, name: str, flags: int) -> int | None:
        try:
            return os.open(self._path(name), flags | self._FLAGS, 0o666)
        except FileNotFoundError:
            return None

    def _read(self, name: str) -> tuple[bytes, str] | None:
        fd = self._open(name, os.O_RDONLY)
        if fd is None:
            return None
        try:
            body = self._body(fd)
        finally:
            os.close(fd)
        return body, self._tag(body)

    def read(self, name: str) -> tuple[bytes, str] | None:
        """Read the file."""
        with self._guard():
            return self._read(name)

    def create(self, name: str, body: bytes) -> str:
        """Write the file unless it exists."""
        with self._guard():
            try:
                fd = self._open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                raise _Conflict from None
            assert fd is not None
            try:
                os.write(fd, body)
            finally:
                os.close(fd)
        return self._tag(body)

    def replace(self, name: str, body: bytes, tag: str) -> str:
        """Overwrite the file if its content still hashes to ``tag``."""
        with self._guard():
            fd = self._open(name, os.O_RDWR)
            if fd is None:
                raise _Conflict
            try:
                if self._tag(self._body(fd)) != tag:
                    raise _Conflict
                os.pwrite(fd, body, 0)
                os.ftruncate(fd, len(body))
            finally:
                os.close(fd)
        return self._tag(body)

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

    Build one for tus uploads with :func:`spoolup.tus.lock.lock_for`. A free lease is
    created only if absent; a lapsed or own one is replaced only if unchanged since
    read; a renewal only if still ours; a release deletes the record only if still ours.
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

    def take_lapsed(self, name: str, owner: str) -> tuple[bool, Lease | None]:
        """Take over a lease only if its record exists and ran out.

        Returns whether a record exists, and the lease taken over (``None`` if absent,
        still held, or taken by someone quicker): a sweep's way to tell abandoned work
        (a lapsed lease: its holder died) from work still under way or never leased.
        """
        current = self._cells.read(name)
        if current is None:
            return False, None
        old, old_tag = current
        parsed = self._parse(old)
        if parsed is not None and parsed[2] > self.clock():
            return True, None
        body = self._record(owner, 1 if parsed is None else parsed[1] + 1)
        try:
            tag = self._cells.replace(name, body, old_tag)
        except _Conflict:
            return True, None
        return True, self._lease(name, body, tag, taken_over=True)


class HeldLeases:
    """The leases one process holds for work running in threads, renewed in the background.

    :meth:`take` acquires a lease, then one daemon thread renews every held lease half
    a lease after its last renewal, until :meth:`drop` releases it. Costs: one write to
    take, one per half lease while the work lives, one delete to drop; none per byte or
    part. A lease lost meanwhile (this process stalled past it and a sweep took it over)
    is forgotten: :meth:`holds` says so, and the work's own next request to the store
    fails (the sweep aborted it).
    """

    def __init__(self, lock: UploadLock, owner: str | None = None) -> None:
        self.lock = lock
        self.owner = owner if owner is not None else secrets.token_hex(8)
        self._held: dict[str, tuple[Lease, float]] = {}  # name: lease, renew at (monotonic)
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None

    def take(self, name: str) -> Lease | None:
        """Acquire the lease on ``name`` and keep it renewed; ``None`` if someone holds it."""
        lease = self.lock.acquire(name, self.owner)
        if lease is None:
            return None
        with self._mutex:
            self._held[name] = (lease, time.monotonic() + self.lock.ttl / 2)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="spoolup-lease-renewal", daemon=True
                )
                self._thread.start()
        return lease

    def holds(self, name: str) -> bool:
        """Whether the lease on ``name`` is held (taken, not dropped, not lost)."""
        with self._mutex:
            return name in self._held

    def drop(self, name: str) -> None:
        """Stop renewing and release the lease on ``name``; nothing if not held."""
        with self._mutex:
            held = self._held.pop(name, None)
        if held is not None:
            with contextlib.suppress(StorageError):
                self.lock.release(held[0])

    def _run(self) -> None:
        while True:
            with self._mutex:
                if not self._held:
                    self._thread = None
                    return
                due = min(at for _, at in self._held.values())
            time.sleep(max(due - time.monotonic(), 0.0) + 0.01)
            self._renew_due()

    def _renew_due(self) -> None:
        now = time.monotonic()
        with self._mutex:
            due = [(name, lease) for name, (lease, at) in self._held.items() if at <= now]
        if len(due) <= 1:
            for name, lease in due:
                self._renew(name, lease)
            return
        # Several at once: one after the other, many writes over a slow store would
        # take longer than half a lease, and the last ones would run out.
        with ThreadPoolExecutor(
            min(_RENEWERS, len(due)), thread_name_prefix="spoolup-lease-renewal"
        ) as pool:
            for renewal in [pool.submit(self._renew, name, lease) for name, lease in due]:
                renewal.result()

    def _renew(self, name: str, lease: Lease) -> None:
        """Renew one held lease; forget it if it was lost."""
        started = time.monotonic()
        renewed: Lease | None = None
        next_at = started + self.lock.ttl / 2
        try:
            renewed = self.lock.renew(lease)
        except LeaseLost:
            logger.warning("the lease on %s was lost (this process stalled?)", name)
        except StorageError as exc:
            # The store is down: try again soon, while the lease still runs.
            logger.warning("renewing the lease on %s failed: %s", name, exc)
            renewed, next_at = lease, started + min(1.0, self.lock.ttl / 10)
        with self._mutex:
            current = self._held.get(name)
            mine = current is not None and current[0] is lease
            if mine and renewed is not None:
                self._held[name] = (renewed, next_at)
            elif mine:
                del self._held[name]
        if not mine and renewed is not None and renewed is not lease:
            # Dropped while being renewed: the release saw the old tag and did nothing.
            with contextlib.suppress(StorageError):
                self.lock.release(renewed)
