"""The tus ASGI app: the sans-IO protocol core over a :class:`~spoolup.tus.store.TusStore`.

Mount it where the collection lives (``/tus`` in ``spoolup serve``)::

    app = create_tus_app(storage, max_size=10 * GiB, expiry=24 * 3600, on_complete=register)

State is kept in the store, never only in memory, so an upload survives a restart and
another server sharing the store can continue it. One PATCH at a time writes an upload:
an in-process set stops a second one here, a short lease (:mod:`spoolup.tus.lock`),
renewed while the request lives and checked before every write, stops one on another
server; either answers 423. Store calls and hashing run in worker threads, never on the
event loop.

A PATCH streams to storage with a few MiB per upload whatever its size, and is hashed
(sha256) on the way; the hash state is kept here between PATCHes, so the upload is
read back only if another process saw some of its bytes. Bytes and offset are made
durable at checkpoints (``checkpoint_bytes`` / ``checkpoint_seconds``). A finished
upload goes through :func:`~spoolup.receive_file` with the handler chain (any content
or size checks given; a storing handler keeps its own copy, ``SkipFile`` drops it) and
is handed to ``on_complete`` as an :class:`~spoolup.files.UploadedFile`; what the
callback returns is kept as the upload's record.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import inspect
import json
import logging
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from spoolup._io import COPY_SIZE, READ_SIZE
from spoolup._periodic import repeat
from spoolup.errors import RequestTooLarge, UploadAborted, UploadError
from spoolup.files import FileInfo, UploadedFile
from spoolup.form import receive_file
from spoolup.handlers import HandlerSpec, HashingHandler, UploadHandler, resolve_handlers
from spoolup.limits import Limits
from spoolup.storage import (
    InsufficientStorage,
    ObjectInfo,
    ObjectNotFound,
    ResumableStorage,
    StorageError,
)
from spoolup.tus.lock import DEFAULT_TTL, Lease, LeaseKeeper, UploadLock, lock_for
from spoolup.tus.protocol import (
    Create,
    Delete,
    Head,
    Options,
    Patch,
    Response,
    TusError,
    TusLimits,
    TusProtocol,
    UploadGone,
    UploadLocked,
    UploadNotFound,
    headers_from_asgi,
)
from spoolup.tus.quota import OpenUploads, client_key
from spoolup.tus.state import UploadInfo
from spoolup.tus.store import DataWriter, TusStore, object_meta

__all__ = ["CompletionCallback", "CreationCallback", "FinalKey", "TusApp", "create_tus_app"]

Scope = Mapping[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CompletionCallback = Callable[[UploadedFile, UploadInfo], Any]
"""``on_complete(file, info)``: called once per finished upload, sync or async.

``file`` has been through the handler chain (``file.hashes["sha256"]`` is filled) and
is open for reading: the stored object itself (a
:class:`~spoolup.storage.handler.StoredFile`, which ``Storage.move`` can move without
copying), or the copy a storing handler kept. Return a JSON-able dict (the file
record) or ``None``. An :class:`~spoolup.UploadError` raised here refuses the upload:
it is removed and the request answers with that status.
"""

FinalKey = Callable[[UploadInfo], str]
"""``final_key(info)``: the storage key a new upload is to end up at (no I/O, at creation).

On S3 the upload is assembled right there, so finishing it copies nothing: the object
appears at that key when the upload is finished (before the handlers and
``on_complete`` run; if they refuse it, it is deleted). Once ``on_complete`` has
returned, the object is the callback's: the tus app never deletes it (expiry and
termination remove only the upload's state); unless a storing handler gave the
callback a copy of its own, the object then being nobody's and deleted. Elsewhere
the finished upload is handed over at ``<id>/data`` and the callback moves it there
(a rename).
"""

CreationCallback = Callable[[UploadInfo], Any]
"""``on_create(info)``: called before an upload is created, sync or async.

``info`` is the upload about to be created (its id, length, metadata); the callback
may change ``info.metadata``. An :class:`~spoolup.UploadError` raised here refuses the
creation: nothing is stored and the request answers with that status.
"""

# Body bytes gathered before one hop to a worker thread. A PATCH is a copy from the
# socket to the upload, so a copy's step rather than the form drivers' BATCH_SIZE: a
# hop waits for a free thread and for the GIL (3 to 5 ms each with 8 uploads at once
# on 2 cores), a quarter as many hops per GiB.
_BATCH = COPY_SIZE
# Chunks of a batch at most (uvicorn hands a fast body over in pieces of 64 KiB or more).
_BATCH_CHUNKS = 64
_READ_CHUNK = READ_SIZE
# Uploads whose hash state this process keeps between requests (about 0.2 KiB each).
_LIVE_MAX = 4096
# Bytes of S3 tails (each under 5 MiB) kept here between requests, at most.
_TAILS_MAX = 64 * 1024 * 1024
MiB = 1024 * 1024
_T = TypeVar("_T")
logger = logging.getLogger("spoolup.tus")


class TusApp:
    """An ASGI app serving tus 1.0.0 over ``store``; see :func:`create_tus_app`."""

    def __init__(
        self,
        store: TusStore,
        *,
        protocol: TusProtocol,
        on_complete: CompletionCallback | None = None,
        handlers: Sequence[HandlerSpec] | None = None,
        lease: float = DEFAULT_TTL,
        lock: UploadLock | None = None,
        sweep_interval: float | None = 300.0,
        clock: Callable[[], float] = time.time,
        checkpoint_bytes: int = 64 * MiB,
        checkpoint_seconds: float = 2.0,
        max_open_uploads: int = 10_000,
        on_create: CreationCallback | None = None,
        max_open_per_client: int | None = 1_000,
        final_key: FinalKey | None = None,
    ) -> None:
        """Serve ``store``; see :func:`create_tus_app` for the options."""
        self.store = store
        self.final_key = final_key
        self.on_create = on_create
        self.checkpoint_bytes = checkpoint_bytes
        self.checkpoint_seconds = checkpoint_seconds
        self.max_open_uploads = max_open_uploads
        self._open = OpenUploads(max_open_uploads, max_open_per_client)
        self._live: dict[str, _Live] = {}
        self.protocol = protocol
        self.on_complete = on_complete
        self.handlers = handlers
        self.lock = lock if lock is not None else lock_for(store, ttl=lease, clock=clock)
        self.sweep_interval = sweep_interval
        self.clock = clock
        self.owner = secrets.token_hex(8)
        self._busy: set[str] = set()
        self._keepers: dict[str, LeaseKeeper] = {}
        # Leases parked after a PATCH, for the upload's next one here (see _locked).
        self._parked: dict[str, Lease] = {}
        self._resumed: set[str] = set()
        self._stalled: list[UploadInfo] = []  # whole, not handed on: found by the sweep
        self._sweeper: asyncio.Task[None] | None = None

    # -- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request (``http``; ``lifespan`` is acknowledged)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not routed here
            return
        self._start_sweeper()
        headers = headers_from_asgi(scope.get("headers", ()))
        method = str(scope["method"]).upper()
        root = str(scope.get("root_path", ""))
        path = str(scope["path"])
        if root and path.startswith(root):
            path = path[len(root) :]
        segment = path.strip("/")
        upload_id = segment or None
        origin = headers.get("origin")
        is_head = method == "HEAD" or headers.get("x-http-method-override", "").upper() == "HEAD"
        try:
            request = self.protocol.read_request(method, upload_id, headers)
            if isinstance(request, Options):
                response = self.protocol.options_response()
            elif isinstance(request, Create):
                client = client_key(scope)
                response = await self._create(request, root, headers, receive, client)
            elif isinstance(request, Head):
                response = await self._head(request)
            elif isinstance(request, Patch):
                response = await self._patch(request, receive)
            else:
                assert isinstance(request, Delete)
                response = await self._delete(request)
        except UploadAborted:
            return  # the client left: no one to answer
        except UploadError as exc:
            response = self.protocol.error_response(exc, head=is_head)
        except StorageError as exc:
            # The storage's own words stay in the log: they can name keys and hosts.
            logger.error("tus: storage failed on %s %s: %s", method, path, exc.message)  # noqa: TRY400
            # The request's frames (and their part buffers) go now, not at the next
            # garbage collection: a part's future holds the error, which holds them.
            exc.__traceback__ = None
            full = exc.status == 507
            failed = TusError(
                "storage is full" if full else "storage failed", status=507 if full else 500
            )
            response = self.protocol.error_response(failed, head=is_head)
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        cors = self.protocol.cors_headers(origin, preflight=preflight)
        await _send_response(send, response, cors)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Stop the background expiry sweep (never raises what the sweep met)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def _start_sweeper(self) -> None:
        if self._sweeper is None and self.sweep_interval is not None:
            self._sweeper = asyncio.get_running_loop().create_task(
                repeat(self.sweep, self.sweep_interval, what="the tus expiry sweep", logger=logger)
            )

    async def sweep(self) -> list[str]:
        """Remove every expired unfinished upload (and finished ones past expiry); return ids.

        Whole uploads whose server died before handing them on are finished.
        """
        removed = await asyncio.to_thread(self._sweep_sync, self.clock())
        await self._finish_stalled()
        return removed

    async def _finish_stalled(self) -> None:
        stalled, self._stalled = self._stalled, []
        for info in stalled:
            try:
                await self._finish_pending(info)
            except (UploadError, StorageError) as exc:
                logger.warning("finishing the upload %s failed: %s", info.id, exc)

    def _sweep_sync(self, now: float) -> list[str]:
        removed = []
        unfinished: list[tuple[str, str | None]] = []
        self._open.listing()
        try:
            for upload_id in list(self.store.ids()):
                if upload_id in self._busy:
                    unfinished.append((upload_id, None))
                    continue
                try:
                    info = self.store.load(upload_id)
                except UploadError:
                    info = None
                gone = info is None or (info.expires is not None and now >= info.expires)
                if gone and self.lock.acquire(upload_id, self.owner) is not None:
                    self.store.delete(upload_id)
                    self.lock.discard(upload_id)
                    self._live.pop(upload_id, None)
                    self._parked.pop(upload_id, None)
                    removed.append(upload_id)
                elif info is not None and not info.is_complete:
                    unfinished.append((upload_id, info.client))
                elif info is not None and not gone and self._completion_pending(info):
                    self._stalled.append(info)
        except BaseException:
            self._open.abandon()
            raise
        self._open.recount(unfinished)  # the open uploads, counted afresh
        return removed

    # -- requests -----------------------------------------------------------------

    async def _load(self, upload_id: str) -> UploadInfo:
        info = await asyncio.to_thread(self.store.load, upload_id)
        if info is None:
            msg = "no such upload"
            raise UploadNotFound(msg)
        return info

    async def _head(self, request: Head) -> Response:
        info = await self._load(request.upload_id)
        self.protocol.check_alive(info, self.clock())
        if info.synced < info.offset:  # saved between checkpoints (local storage)
            # After a power loss, where the client can go on from (a PATCH saves it).
            info.offset = await asyncio.to_thread(self.store.resumable_offset, info)
        if info.is_complete and self._completion_pending(info):
            info = await self._finish_pending(info)
        return _with_record(self.protocol.head_response(info), info)

    async def _finish_pending(self, info: UploadInfo) -> UploadInfo:
        """Run the completion of a whole upload whose server died before handing it on.

        A client that sees the full offset sends no PATCH (tuspy, tus-js-client): a
        ``HEAD``, and the expiry sweep, finish the upload instead, under its lease.
        While someone else holds the lease (it is completing it right now), when the
        store fails (the next request tries again), or when the dead server had
        already handed the bytes on (they are no longer in the store, and its record
        is unknown), ``info`` is returned as it is.
        """

        async def run() -> UploadInfo:
            current = await self._load(info.id)
            if current.is_complete and self._completion_pending(current):
                if current.backend.get("done") and not await asyncio.to_thread(
                    self.store.storage.exists, self.store.data_key(current)
                ):
                    logger.warning("the upload %s was handed on without its record", info.id)
                    return current
                await self._after_write(current, None)
            return current

        try:
            return await self._locked(info.id, run())
        except UploadLocked:
            return info
        except StorageError as exc:  # tried again by the next HEAD, PATCH or sweep
            logger.warning("finishing the upload %s failed: %s", info.id, exc)
            return info

    async def _create(
        self,
        request: Create,
        root: str,
        headers: Mapping[str, str],
        receive: Receive,
        client: str,
    ) -> Response:
        upload_id = secrets.token_urlsafe(16)
        await self._admit(client, upload_id)
        try:
            now = self.clock()
            info = UploadInfo(
                id=upload_id,
                client=client,
                length=request.length,
                metadata=request.metadata,
                created=now,
                expires=self.protocol.expires_at(now),
                concat=request.concat,
            )
            location = f"{root}/{upload_id}"
            if self.on_create is not None:
                created = self.on_create(info)
                if inspect.isawaitable(created):
                    await created
            parts = None
            if request.concat == "final":
                ids = self.protocol.concat_ids(request.parts, root, headers.get("host"))
                parts = [await self._load(p) for p in ids]
                info.length = self.protocol.check_final_parts(parts, now)
                info.parts = ids
                info.part_urls = request.parts
            final_key = None
            if self.final_key is not None and request.concat != "partial":
                final_key = self.final_key(info)  # a partial upload is no file of its own
            await asyncio.to_thread(
                self.store.create, info, final_key=final_key, unsaved=self.checkpoint_bytes
            )
        except BaseException:
            self._closed_one(upload_id)  # never recorded: no longer counted
            raise
        self._open.recorded(upload_id)
        if parts is not None:
            await self._locked(info.id, self._or_remove(info, self._concat(info, parts)))
            return _with_record(
                self.protocol.created_response(info, location, with_body=False), info
            )
        if request.body_length is None:
            if info.is_complete:  # an empty file is whole at once
                await self._locked(upload_id, self._or_remove(info, self._after_write(info, None)))
            return self.protocol.created_response(info, location, with_body=False)
        body_length = None if request.body_length == -1 else request.body_length
        first = Patch(
            upload_id=upload_id, offset=0, body_length=body_length, checksum=request.checksum
        )
        await self._locked(upload_id, self._or_remove(info, self._write(info, first, receive)))
        return _with_record(self.protocol.created_response(info, location, with_body=True), info)

    async def _admit(self, client: str, upload_id: str) -> None:
        """Refuse a creation past ``max_open_uploads`` unfinished uploads, or past
        ``max_open_per_client`` of ``client``'s (429; see :mod:`spoolup.tus.quota`);
        else count ``upload_id`` at once, so that creations at once see each other.

        The counts are taken from one listing on the first creation and at every sweep,
        and kept up to date in between, never by a listing per creation.
        """
        if not self._open.counted:
            self._open.listing()
            try:
                found = await asyncio.to_thread(self._list_open)
            except BaseException:
                self._open.abandon()
                raise
            self._open.recount(found)
        self._open.admit(client)
        self._open.opened(upload_id, client)

    def _list_open(self) -> list[tuple[str, str | None]]:
        found: list[tuple[str, str | None]] = []
        for upload_id in self.store.ids():
            with contextlib.suppress(UploadError):
                info = self.store.load(upload_id)
                if info is not None and not info.is_complete:
                    found.append((upload_id, info.client))
        return found

    def _closed_one(self, upload_id: str) -> None:
        self._open.closed(upload_id)

    async def _or_remove(self, info: UploadInfo, work: Awaitable[None]) -> None:
        """Run the work of a creation; if it fails, remove the upload it created.

        The client learns the upload's URL only from a successful answer: an upload
        whose creation failed (a body too large, a client gone, a part that vanished)
        could never be resumed, and would only take room until it expired.
        """
        try:
            await work
        except BaseException:
            await asyncio.shield(self._remove(info.id))
            raise

    async def _remove(self, upload_id: str, *, unfinished: bool = True) -> None:
        self._live.pop(upload_id, None)
        self._parked.pop(upload_id, None)
        await asyncio.to_thread(self.store.delete, upload_id)
        await asyncio.to_thread(self.lock.discard, upload_id)
        if unfinished:
            self._closed_one(upload_id)

    async def _patch(self, request: Patch, receive: Receive) -> Response:
        async def run() -> Response:
            info = self._resumed_info(request.upload_id)
            if info is None:
                info = await self._load(request.upload_id)
                await self._fall_back(info)
            # else: saved by this process, alive since; only a power loss could have
            # cut the data short since, and it would have ended this process too.
            new_length = self.protocol.check_patch(info, request, self.clock())
            if new_length is not None:
                info.length = new_length
            elif info.is_complete:  # nothing left to write: say what it became
                if self._completion_pending(info):
                    await self._after_write(info, None)
                return _with_record(self.protocol.patched_response(info), info)
            await self._write(info, request, receive)
            return _with_record(self.protocol.patched_response(info), info)

        return await self._locked(request.upload_id, run())

    def _completion_pending(self, info: UploadInfo) -> bool:
        """Whether a whole upload was never handed on (its completion failed midway).

        The bytes are all there but the callback did not finish (a storage error, a
        crash): a PATCH at the final offset runs the completion again.
        """
        return (
            info.concat != "partial"
            and info.record is None
            and not info.backend.get("discarded")
            and not (self.on_complete is None and info.backend.get("done"))
        )

    async def _delete(self, request: Delete) -> Response:
        async def run() -> Response:
            info = await self._load(request.upload_id)
            await self._remove(request.upload_id, unfinished=not info.is_complete)
            return self.protocol.deleted_response()

        return await self._locked(request.upload_id, run(), release=False)

    async def _locked(self, upload_id: str, work: Awaitable[_T], *, release: bool = True) -> _T:
        # The one place an upload is locked: in this process by a set, across servers
        # by a lease, kept while the work runs and checked before each of its writes.
        if upload_id in self._busy:
            _close_awaitable(work)
            msg = "another request is writing this upload"
            raise UploadLocked(msg)
        self._busy.add(upload_id)
        try:
            try:
                lease = await self._take_lease(upload_id)
            except BaseException:  # the lock store failed: the work never starts
                _close_awaitable(work)
                raise
            if lease is None:
                _close_awaitable(work)
                msg = "another server is writing this upload"
                raise UploadLocked(msg)
            # A termination removes the lease with the upload: nothing to release.
            keeper = LeaseKeeper(self.lock, lease, release=release)
            self._keepers[upload_id] = keeper
            async with keeper:
                result = await work
                # An unfinished upload's lease is parked, not released, when the work
                # went well: its next PATCH here takes it back cheaply (_take_lease).
                # A PATCH parks it in the thread that saved its state (_Stream).
                park = release and upload_id in self._live
                keeper.release = release and not park
            if park:
                parked = keeper.parked
                if parked is None and not keeper.lost:
                    parked = await asyncio.shield(asyncio.to_thread(keeper.park))
                if parked is not None:
                    self._parked[upload_id] = parked
                    _bound(self._parked)
            return result
        finally:
            self._keepers.pop(upload_id, None)
            self._resumed.discard(upload_id)
            self._busy.discard(upload_id)

    async def _take_lease(self, upload_id: str) -> Lease | None:
        """The upload's lease: a parked one taken back, else a fresh one (``None``: held).

        A lease taken back proves nobody else wrote the upload since this process
        parked it, so what it kept of the upload then (:meth:`_resumed_info`) holds.
        """
        parked = self._parked.pop(upload_id, None)
        if parked is not None:
            lease = await asyncio.to_thread(self.lock.resume, parked)
            if lease is not None:
                self._resumed.add(upload_id)
                return lease
        return await asyncio.to_thread(self.lock.acquire, upload_id, self.owner)

    def _resumed_info(self, upload_id: str) -> UploadInfo | None:
        """The state this process saved last, if its lease was taken back untouched."""
        live = self._live.get(upload_id)
        if upload_id not in self._resumed or live is None:
            return None
        return UploadInfo.from_json(live.state)

    async def _fall_back(self, info: UploadInfo) -> None:
        """Move the upload back to its last checkpoint if the bytes after it are gone.

        As :meth:`_head` reports (a power loss), so a client that resumes from there
        is not refused; saved under the lease.
        """
        if info.synced < info.offset and await asyncio.to_thread(self.store.fall_back, info):
            await asyncio.to_thread(self._fenced, info.id, self.store.save, info)

    def _fence(self, upload_id: str) -> None:
        """Before a write: :class:`~spoolup.tus.lock.LeaseLost` (423) if the lease is gone."""
        keeper = self._keepers.get(upload_id)
        if keeper is not None:
            keeper.check()

    def _fenced(self, upload_id: str, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        self._fence(upload_id)
        return func(*args, **kwargs)

    # -- writing ------------------------------------------------------------------

    def _take_live(self, info: UploadInfo) -> tuple[bytes | None, _Hashed | None]:
        """What this process kept of the upload that still holds: its tail, its hash.

        The tail only if nobody else saved the upload since (same ``rev``). The hash
        state also when others wrote after it (the bytes before an offset never change
        unless the upload fell back to a checkpoint, which is counted).
        """
        live = self._live.pop(info.id, None)
        if live is None:
            return None, None
        tail = live.tail if live.rev == info.rev and live.offset == info.offset else None
        hashed = live.hashed
        if hashed is None or hashed.offset > info.offset or live.fallbacks != _fallbacks(info):
            hashed = None
        return tail, hashed

    def _keep_live(self, info: UploadInfo, hashed: _Hashed | None, tail: bytes | None) -> None:
        if info.is_complete:
            return
        if tail and len(tail) + sum(len(k.tail or b"") for k in self._live.values()) > _TAILS_MAX:
            tail = None  # read from the store next time
        live = _Live(info.rev, info.offset, hashed, _fallbacks(info), info.to_json(), tail)
        self._live[info.id] = live
        _bound(self._live)

    def _caught_up(self, info: UploadInfo, hashed: _Hashed) -> _Hashed | None:
        """The hash state moved on over the bytes others wrote, read back, if readable.

        Only the bytes this process missed are read (from ``hashed.offset`` to the
        upload's offset); ``None`` where the backend cannot read an unfinished upload
        (S3) or the read failed.
        """
        try:
            stream = self.store.read_written(info, hashed.offset, info.offset)
            if stream is None:
                return None
            hasher = hashed.hasher.copy()
            with stream:
                while chunk := stream.read(_READ_CHUNK):
                    hasher.update(chunk)
        except (UploadError, StorageError, OSError) as exc:
            logger.warning("reading back upload %s to hash it failed: %s", info.id, exc)
            return None
        return _Hashed(hasher, info.offset)

    def _hash_rest(self, info: UploadInfo, hashed: _Hashed) -> str | None:
        """The finished upload's sha256: the hash state, then the bytes after it, read back."""
        hasher = hashed.hasher.copy()
        try:
            with self.store.open(info, start=hashed.offset) as stream:
                while chunk := stream.read(_READ_CHUNK):
                    hasher.update(chunk)
        except (UploadError, StorageError, OSError) as exc:
            logger.warning("reading back upload %s to hash it failed: %s", info.id, exc)
            return None
        return hasher.hexdigest()

    async def _write(self, info: UploadInfo, request: Patch, receive: Receive) -> None:
        """Append the request body to the upload, then finish it if it is complete."""
        body = _read_body(receive, self.protocol.room(info), request.body_length)
        if request.checksum is not None:
            body = _verified(body, request)
        await self._skip_stray_parts(info)
        tail, hashed = self._take_live(info)
        expected = info.offset
        writer = await asyncio.to_thread(self.store.writer, info, tail=tail)
        self._fence_writer(writer)
        if writer.offset != expected:  # fell back to the last checkpoint (info too)
            await asyncio.to_thread(writer.close)
            await asyncio.to_thread(self.store.save, info)
            msg = f"the upload lost its bytes after its last checkpoint: now at {info.offset}"
            raise TusError(msg, status=409)
        if info.offset == 0:
            hashed = _Hashed(hashlib.sha256(), 0)
        elif hashed is not None and hashed.offset < info.offset:
            # Another process wrote since this one hashed: read back only what it missed.
            hashed = await asyncio.to_thread(self._caught_up, info, hashed) or hashed
        current = hashed is not None and hashed.offset == info.offset
        stream = _Stream(self, writer, hashed.hasher if hashed and current else None)
        # A hash state that could not catch up is kept for the completion to go on from.
        stream.behind = None if current else hashed
        try:
            await stream.run(body)
        finally:
            await asyncio.shield(stream.end())
        await self._after_write(info, stream.hasher, stream.behind)

    async def _skip_stray_parts(self, info: UploadInfo) -> None:
        """After taking the lease from a holder that never let it go, skip its part numbers.

        It may have been frozen with parts on the wire that land later, at most those
        of one checkpoint's bytes past its last saved state (see
        :meth:`TusStore.skip_parts`). Then a 409 if the rest of the upload no longer
        fits in the storage's part numbers.
        """
        keeper = self._keepers.get(info.id)
        if keeper is not None and keeper.taken_over:
            unsaved = self.checkpoint_bytes
            await asyncio.to_thread(self._fenced, info.id, self.store.skip_parts, info, unsaved)
        self.store.check_part_numbers(info)

    def _fence_writer(self, writer: DataWriter) -> None:
        """Fence each of the writer's writes to storage with the upload's lease.

        Also the parts it sends in the background, and within the part numbers a
        takeover skips (see :meth:`_skip_stray_parts`).
        """
        keeper = self._keepers.get(writer.info.id)
        if keeper is not None:
            writer.fence_with(keeper.check, unsaved=self.checkpoint_bytes)

    def _due(self, offset: int, marked: tuple[int, float]) -> bool:
        return (
            offset - marked[0] >= self.checkpoint_bytes
            or self.clock() - marked[1] >= self.checkpoint_seconds
        )

    def _checkpoint(self, writer: DataWriter, snapshot: UploadInfo) -> None:
        if not writer.begin_save(snapshot):
            return  # the writer saved a newer state meanwhile
        saved = False
        try:
            writer.sync_snapshot()
            snapshot.expires = self.protocol.expires_at(self.clock())
            self._fenced(snapshot.id, self.store.save, snapshot)
            saved = True
        finally:
            writer.end_save(snapshot, saved=saved)

    def _save_written(self, writer: DataWriter, sync: bool) -> None:
        # Once the lease is lost, what this request still holds is dropped, never
        # written over the work of the server that took the upload over.
        self._fenced(writer.info.id, writer.flush, final=True, sync=sync)
        if writer.info.is_complete:
            # Finishing it saves the state next (TusStore.finish); if this process dies
            # first, the client was not answered and sends these bytes again.
            return
        writer.info.expires = self.protocol.expires_at(self.clock())
        self._fenced(writer.info.id, self.store.save, writer.info, durable=sync)

    async def _after_write(
        self, info: UploadInfo, hasher: hashlib._Hash | None, behind: _Hashed | None = None
    ) -> None:
        if not info.is_complete:
            return
        self._live.pop(info.id, None)
        if info.concat == "partial":
            # A partial upload is no file of its own: its final concatenation will be.
            await asyncio.to_thread(self._fenced, info.id, self.store.finish, info)
            self._closed_one(info.id)
            return
        digest = None if hasher is None else hasher.hexdigest()
        await self._complete(info, digest, behind)

    async def _concat(self, info: UploadInfo, parts: list[UploadInfo]) -> None:
        try:
            digest = await asyncio.to_thread(
                self._fenced, info.id, self.store.concat, info, parts, fence=self._fence_writer
            )
        except (FileNotFoundError, ObjectNotFound):
            # The parts are not locked while they are copied: one was terminated or
            # expired meanwhile.
            msg = "a partial upload was removed during the concatenation"
            raise UploadGone(msg) from None
        await self._complete(info, digest)

    async def _complete(
        self, info: UploadInfo, digest: str | None, behind: _Hashed | None = None
    ) -> None:
        """Hand the finished upload to the handlers, then to the completion callback.

        ``behind``: the hash of the bytes up to some offset when ``digest`` is not
        known; only the bytes after it are read back.
        """
        try:
            finished = await asyncio.to_thread(
                self._fenced, info.id, self.store.finish, info, sha256=digest
            )
            if digest is None and behind is not None:
                digest = await asyncio.to_thread(self._hash_rest, info, behind)
            upload = await asyncio.to_thread(self._receive_finished, info, digest, finished)
            if upload is None:  # a handler skipped the file: nothing is kept
                await asyncio.to_thread(self.store.discard_data, info)
                self._closed_one(info.id)
                return
            try:
                record = self.on_complete(upload, info) if self.on_complete else None
                if inspect.isawaitable(record):
                    record = await record
            finally:
                await asyncio.to_thread(upload.close)
        except UploadError:
            await self._remove(info.id)
            raise
        self._closed_one(info.id)
        info.record = dict(record) if isinstance(record, Mapping) else None
        if self.on_complete is not None:
            # The callback took the file; without one the data stays in the store.
            await asyncio.to_thread(self._fenced, info.id, self.store.hand_over, info, upload)

    def _receive_finished(
        self, info: UploadInfo, digest: str | None, finished: ObjectInfo | None = None
    ) -> UploadedFile | None:
        """The finished upload through :func:`~spoolup.receive_file` and the handlers.

        The bytes are read back only when a handler needs them (custom handlers, or a
        sha256 this process could not compute while receiving: another server or a
        restart saw some of them). A storing handler's file is returned; else the
        stored object itself, where it lies (the callback may move it, not copy it);
        ``None`` when a handler skipped the file.
        """
        size = info.offset
        raw_name = info.filename
        meta = object_meta(info)
        file_info = FileInfo(
            field_name="",
            filename=meta.filename or info.id,
            raw_filename=raw_name,
            content_type=meta.content_type,
            content_length=size,
        )
        stored = self.store.uploaded_file(info, file_info, finished)
        chain = resolve_handlers(self.handlers or ())
        if digest is None:
            chain.insert(0, HashingHandler("sha256"))
        limits = Limits(max_body_size=max(size, 1), max_file_size=max(size, 1))
        try:
            file = receive_file(
                stored.chunks(_READ_CHUNK) if chain else b"",
                filename=raw_name or info.id,
                content_type=info.content_type,
                limits=limits,
                handlers=[*chain, _KeepStored(stored)],
                content_length=size if chain else None,
            )
        except BaseException:
            stored.close()
            raise
        if file is not stored:
            stored.close()
        if file is not None:
            if digest is not None:
                file.hashes.setdefault("sha256", digest)
            file.seek(0)
        return file


class _Stream:
    """One request body streamed onto an upload.

    One batch is written (and hashed) in a worker thread while the next is read; a
    checkpoint runs beside both. :meth:`end` always runs: whatever arrived is kept,
    even when the client left mid-request, and it resumes from the saved offset.
    ``hasher`` is ``None`` once it no longer matches the bytes written.
    """

    def __init__(self, app: TusApp, writer: DataWriter, hasher: hashlib._Hash | None) -> None:
        self.app = app
        self.writer = writer
        self.hasher = hasher
        self.behind: _Hashed | None = None
        self.pending: asyncio.Future[None] | None = None
        self.checkpoint: asyncio.Future[None] | None = None
        # Checkpoints count from the upload's last one, not from this request's start:
        # a stream of PATCHes each shorter than the interval still gets one every
        # checkpoint_bytes of the upload (seconds are counted within a request).
        self.marked = (min(writer.info.synced, writer.offset), app.clock())
        self.closed = False
        self.whole = False  # the body was read to its end and written

    async def run(self, body: AsyncIterator[list[bytes]]) -> None:
        app, writer = self.app, self.writer
        async for batch in body:
            await self._written()
            if app._due(writer.offset, self.marked) and (
                self.checkpoint is None or self.checkpoint.done()
            ):
                if self.checkpoint is not None:
                    self.checkpoint.result()
                self.marked = (writer.offset, app.clock())
                snapshot = writer.snapshot()
                if snapshot is not None:
                    self.checkpoint = _in_thread(self._checkpoint, snapshot)
            self.pending = _in_thread(
                app._fenced, writer.info.id, _write_hashed, writer, self.hasher, batch
            )
        await self._written()
        self.whole = True

    async def _written(self) -> None:
        if self.pending is not None:
            try:
                # Shielded: a write under way in a thread cannot be cancelled.
                await asyncio.shield(self.pending)
            except BaseException:
                if self.pending.done():
                    self.hasher = None
                raise

    async def end(self) -> None:
        writer = self.writer
        try:
            if self.pending is not None:
                with contextlib.suppress(BaseException):
                    await self.pending
                if self.pending.cancelled() or self.pending.exception() is not None:
                    self.hasher = None
                    if self.checkpoint is not None:  # it may have failed too (a lost lease)
                        with contextlib.suppress(BaseException):
                            await self.checkpoint
                    return  # nothing is saved past the failed write
            if self.checkpoint is not None:
                await self.checkpoint
            info = writer.info
            sync = self.app._due(writer.offset, self.marked) and writer.offset != info.length
            await asyncio.to_thread(self._save_and_close, sync)
            # Every byte written was hashed: the next request here goes on from it.
            hashed = self.behind if self.hasher is None else _Hashed(self.hasher, info.offset)
            self.app._keep_live(info, hashed, writer.tail)
        finally:
            if not self.closed:
                await asyncio.to_thread(writer.close)

    def _checkpoint(self, snapshot: UploadInfo) -> None:
        self.app._checkpoint(self.writer, snapshot)
        # Its bytes are durable now (fsynced; on S3, stored parts, even when the writer
        # saved a newer state instead): the state saved at the end of the request
        # counts them too, and the next request counts its interval from there.
        info = self.writer.info
        info.synced = max(info.synced, snapshot.synced)

    def _save_and_close(self, sync: bool) -> None:
        # One hop to a worker thread for all: each hop waits for a thread and the GIL.
        info = self.writer.info
        try:
            self.app._save_written(self.writer, sync)
        finally:
            self.closed = True
            self.writer.close()
        keeper = self.app._keepers.get(info.id)
        if self.whole and keeper is not None and keeper.release and not info.is_complete:
            # Its last write is done and saved: park the lease here already, for the
            # upload's next request (as _locked would, one hop later). A request cut
            # short releases it instead, as it fails.
            keeper.park()


class _KeepStored(UploadHandler):
    """Last in a finished upload's chain: keeps the stored object as the file."""

    def __init__(self, stored: UploadedFile) -> None:
        self.stored = stored

    def file_complete(self, size: int) -> UploadedFile | None:
        return self.stored


@dataclass(frozen=True, slots=True)
class _Hashed:
    """The sha256 state of an upload's bytes before ``offset``."""

    hasher: hashlib._Hash
    offset: int


@dataclass(slots=True)
class _Live:
    """What this process keeps of an upload it is receiving, between its requests.

    ``rev`` and ``offset`` are those of the state it saved last (``state``, JSON);
    ``hashed`` the hash of the bytes it saw, up to where it saw all (``None``: it
    missed the first ones); ``fallbacks`` the upload's count of falls back to a
    checkpoint then; ``tail`` the bytes of ``<id>/tail.<start>`` (``None``: not known here).
    """

    rev: str
    offset: int
    hashed: _Hashed | None
    fallbacks: int
    state: bytes
    tail: bytes | None


def _fallbacks(info: UploadInfo) -> int:
    return int(info.backend.get("fallbacks", 0))


def _bound(kept: dict[str, Any]) -> None:
    """Forget the oldest entries past ``_LIVE_MAX``."""
    while len(kept) > _LIVE_MAX:
        kept.pop(next(iter(kept)))


def _write_hashed(writer: DataWriter, hasher: hashlib._Hash | None, batch: list[bytes]) -> None:
    if hasher is not None:
        for chunk in batch:
            hasher.update(chunk)
    writer.write_chunks(batch)


def _in_thread(func: Callable[..., None], *args: Any) -> asyncio.Future[None]:
    return asyncio.ensure_future(asyncio.to_thread(func, *args))


async def _verified(body: AsyncIterator[list[bytes]], request: Patch) -> AsyncIterator[list[bytes]]:
    """The body, held aside until its ``Upload-Checksum`` is verified.

    A failing chunk must leave no trace (460), and a chunk cut short cannot be
    verified, so it is dropped too. Held in a temp file past one batch.
    """
    assert request.checksum is not None
    hasher = request.checksum.hasher()
    with tempfile.SpooledTemporaryFile(max_size=_BATCH) as spool:
        async for batch in body:
            for chunk in batch:
                hasher.update(chunk)
            try:
                await asyncio.to_thread(spool.writelines, batch)
            except OSError as exc:  # the temp folder, not the storage, is full
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                msg = "no space left in the temp folder to verify the chunk"
                raise InsufficientStorage(msg) from None
        request.checksum.verify(hasher)
        spool.seek(0)
        while chunk := await asyncio.to_thread(spool.read, _BATCH):
            yield [chunk]


async def _read_body(
    receive: Receive, room: int, declared: int | None
) -> AsyncIterator[list[bytes]]:
    """The request body in batches of :data:`_BATCH` bytes; 413 past ``room`` bytes.

    A batch is the list of the chunks received, never joined on the event loop: the
    worker thread hashes them and writes them with one system call. A batch ends
    early at :data:`_BATCH_CHUNKS` chunks, so that a body arriving in tiny pieces
    holds no long list of small objects.
    """
    received = 0
    pending: list[bytes] = []
    pending_size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            if pending:
                yield pending
            raise UploadAborted("the client disconnected during the upload")
        data = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        received += len(data)
        if received > room:
            raise RequestTooLarge.for_limit("Upload-Length", room, "the chunk")
        if data:
            pending.append(data)
            pending_size += len(data)
        if pending and (pending_size >= _BATCH or len(pending) >= _BATCH_CHUNKS or not more):
            yield pending
            pending, pending_size = [], 0
    if declared is not None and received != declared:
        msg = f"the body has {received} bytes, Content-Length said {declared}"
        raise TusError(msg)


def _with_record(response: Response, info: UploadInfo) -> Response:
    """Name the file record a finished upload became.

    ``Spoolup-File-Id`` is its id; ``Spoolup-File-Record`` the whole record as base64 of
    its UTF-8 JSON (a PATCH answer has no body), so a client can check the stored
    sha256 without another request.
    """
    record = info.record or {}
    file_id = record.get("id")
    if not isinstance(file_id, str) or not file_id.isascii() or not file_id.isprintable():
        return response
    encoded = base64.b64encode(json.dumps(record, separators=(",", ":")).encode()).decode()
    headers = (
        *response.headers,
        ("Spoolup-File-Id", file_id),
        ("Spoolup-File-Record", encoded),
    )
    return Response(response.status, headers, response.body)


def _close_awaitable(work: Awaitable[Any]) -> None:
    if inspect.iscoroutine(work):
        work.close()


async def _send_response(
    send: Send, response: Response, extra: tuple[tuple[str, str], ...]
) -> None:
    headers = [*response.headers, *extra]
    if response.status not in (204, 304):
        headers.append(("Content-Length", str(len(response.body))))
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def create_tus_app(
    storage: object,
    *,
    max_size: int = 10 * 1024**3,
    expiry: float | None = 24 * 3600.0,
    on_complete: CompletionCallback | None = None,
    handlers: Sequence[HandlerSpec] | None = None,
    allow_origins: Sequence[str] = (),
    limits: TusLimits | None = None,
    lease: float = DEFAULT_TTL,
    lock: UploadLock | None = None,
    sweep_interval: float | None = 300.0,
    clock: Callable[[], float] = time.time,
    checkpoint_bytes: int = 64 * MiB,
    checkpoint_seconds: float = 2.0,
    max_open_uploads: int = 10_000,
    on_create: CreationCallback | None = None,
    max_open_per_client: int | None = 1_000,
    final_key: FinalKey | None = None,
) -> TusApp:
    """The tus ASGI app over ``storage``, to mount at the collection's path (``/tus``).

    ``storage`` is a spoolup storage backend (local or S3: state and data under its
    ``tus/`` prefix, the bytes in its resumable uploads), a folder (``str`` or
    ``Path``, a :class:`~spoolup.storage.LocalStorage` over it) or a
    :class:`~spoolup.tus.store.TusStore`. ``max_size`` is ``Tus-Max-Size``;
    ``expiry`` the seconds an unfinished upload lives after its last write (``None``:
    forever), removed by a sweep every ``sweep_interval`` seconds.

    ``handlers`` is the chain a finished upload is run through (none by default: its
    sha256 is computed while it is received); ``on_complete`` then receives it (see
    :data:`CompletionCallback`). ``lease`` (seconds) bounds how long a crashed server's
    write lease blocks an upload; ``lock`` is where leases are kept (by default beside
    the uploads, see :func:`~spoolup.tus.lock.lock_for`). ``on_create`` may refuse an
    upload, or change its metadata, before it is created (see :data:`CreationCallback`).
    ``allow_origins`` are the origins (``https://app.example.org``) whose pages get CORS
    headers; none by default, so that no other web site's page can use the uploads
    through its visitors' browsers (``("*",)`` allows any).

    Durability: the bytes and the offset are made durable at checkpoints, every
    ``checkpoint_bytes`` or ``checkpoint_seconds`` of a request, whichever comes first,
    and at the end of a request past either; a crash loses at most what came after the
    last checkpoint (the client resumes from there). ``max_open_uploads`` caps the
    unfinished uploads (a creation beyond answers 429), ``max_open_per_client`` those
    of one client (its address, or the name an authentication layer gives it: see
    :mod:`spoolup.tus.quota`;
    ``None``: no per-client cap). ``final_key`` names, at creation, the key each
    upload is to end up at, so that on S3 finishing it copies nothing (see
    :data:`FinalKey`).
    """
    tus_limits = limits if limits is not None else TusLimits(max_size=max_size)
    if limits is not None and limits.max_size != max_size:
        tus_limits = TusLimits(
            max_size=max_size,
            max_metadata_size=limits.max_metadata_size,
            max_metadata_pairs=limits.max_metadata_pairs,
            max_concat_parts=limits.max_concat_parts,
            max_header_size=limits.max_header_size,
        )
    protocol = TusProtocol(limits=tus_limits, allow_origins=tuple(allow_origins), expiry=expiry)
    return TusApp(
        tus_store_for(storage),
        protocol=protocol,
        on_complete=on_complete,
        handlers=handlers,
        lease=lease,
        lock=lock,
        sweep_interval=sweep_interval,
        clock=clock,
        checkpoint_bytes=checkpoint_bytes,
        checkpoint_seconds=checkpoint_seconds,
        max_open_uploads=max_open_uploads,
        on_create=on_create,
        max_open_per_client=max_open_per_client,
        final_key=final_key,
    )


def tus_store_for(storage: object) -> TusStore:
    """The :class:`TusStore` for a storage backend, a folder, or a store given as is."""
    if isinstance(storage, TusStore):
        return storage
    if isinstance(storage, str | Path | ResumableStorage):
        return TusStore(storage)
    msg = f"no tus store for {type(storage).__name__}"
    raise TypeError(msg)
