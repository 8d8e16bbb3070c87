"""Where tus uploads live between requests: one store over any spoolup storage backend.

:class:`TusStore` keeps, under ``prefix`` + ``<id>/`` of a
:class:`~spoolup.storage.ResumableStorage` (local or S3): ``info`` (the state, JSON),
``lock`` (the write lease on S3, see :mod:`spoolup.tus.lock`) and, on backends with a
minimum part size, ``tail`` (the bytes short of a part between requests). The bytes go
into the backend's resumable (multipart) upload for ``<id>/data``, whose id is kept in
the state, so any server sharing the storage continues the upload and nothing is only in
memory.

A request's bytes are streamed by a :class:`DataWriter`: on a backend whose uploads are
one growing file (local), straight onto its end; on S3, gathered into parts of
``part_size`` (8 MiB), so at most one part per upload is ever held in memory. Durability
comes at checkpoints, not per write (see :meth:`DataWriter.snapshot`). All methods
block; the tus app calls them in worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from spoolup._io import COPY_SIZE, MiB, io_pool
from spoolup._part_buffers import PROCESS_BUFFERS
from spoolup.files import FileInfo, UploadedFile
from spoolup.headers import safe_filename
from spoolup.storage import (
    ObjectInfo,
    ObjectMeta,
    ObjectNotFound,
    PartInfo,
    ResumableStorage,
    StorageError,
)
from spoolup.storage.handler import StoredFile
from spoolup.storage.leases import LeaseLost
from spoolup.storage.resumable import PartAppender, WriteConflict
from spoolup.tus.protocol import TusError, is_upload_id
from spoolup.tus.state import StateError, UploadInfo

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["DataWriter", "TusStore"]

_S3_PART = 8 * MiB
# Parts of one upload sent in the background while the next one fills (a store takes a
# few parts at once faster); each needs a buffer for the next part lent by the process's
# part budget (spoolup._part_buffers): past it, an upload sends its part itself
# (receiving waits) and fills the same buffer again.
_SENDING_EACH = 3
# S3 numbers a multipart upload's parts 1 to 10,000.
_MAX_PART_NUMBER = 10_000
# Seconds between two looks at the lease while a writer waits for a checkpoint's save.
_SAVE_POLL = 0.1
# Uploads whose state's tag a store keeps (see TusStore.save), about 0.2 KiB each.
_TAGS_MAX = 16_384


def _part_buffer(size: int) -> bytearray:
    """A buffer of ``size`` bytes (its content is left over: it is written before read).

    From the process's pool of part buffers (:mod:`spoolup._part_buffers`), shared with
    the streamed S3 writes: reused rather than allocated (8 MiB per part, zeroed, from
    many threads, fragments the heap and leaves the process larger), and counted.
    """
    return PROCESS_BUFFERS.take(size)


def _give_back(buffer: bytearray, size: int) -> None:
    """Return a buffer no one reads any more (its part was sent) for another part."""
    PROCESS_BUFFERS.give_back(buffer)


class TusStore:
    """tus uploads kept in a spoolup :class:`~spoolup.storage.ResumableStorage`.

    ``storage`` is a backend or a folder (a :class:`~spoolup.storage.LocalStorage`
    is made over it). ``part_size`` is the size of the parts sent to a backend with a
    minimum part size (S3; 8 MiB by default, so 10 GiB fit in 1,280 parts).
    """

    def __init__(
        self, storage: ResumableStorage | str | Path, *, prefix: str = "tus/", part_size: int = 0
    ) -> None:
        if not isinstance(storage, ResumableStorage):
            from spoolup.storage.local import LocalStorage

            storage = LocalStorage(storage)
        self.storage = storage
        self.prefix = prefix
        self.part_size = max(part_size or _S3_PART, storage.min_part_size)
        # Per upload, the tag of the state this store read or wrote last (see save).
        self._tags: dict[str, str] = {}
        self._tags_lock = threading.Lock()

    def key(self, upload_id: str, name: str) -> str:
        """The storage key of one of the upload's objects."""
        if not is_upload_id(upload_id):
            msg = f"not an upload id: {upload_id!r}"
            raise ValueError(msg)
        return f"{self.prefix}{upload_id}/{name}"

    # -- state ------------------------------------------------------------------------

    def load(self, upload_id: str) -> UploadInfo | None:
        """The upload's state, or ``None``; :class:`StateError` if it is damaged."""
        try:
            data, tag = self.storage.read_tagged(self.key(upload_id, "info"))
        except ObjectNotFound:
            return None
        info = UploadInfo.from_json(data)
        if info.id != upload_id:
            msg = "damaged upload state: wrong id"
            raise StateError(msg)
        self._tag(upload_id, tag)
        return info

    def save(self, info: UploadInfo, *, durable: bool = True) -> None:
        """Write ``<id>/info`` atomically with a new ``rev``.

        ``durable=False`` publishes it to other servers without waiting for stable
        storage (local fsyncs skipped); see :meth:`Storage.write`. On S3 the write
        lands only over the state this store read or wrote last: a save of a holder
        that froze with it on the wire (its lease checked just before) finds the state
        of the server that took the upload over since, and fails (:class:`LeaseLost`,
        423) rather than undo its work, or bring back an upload it terminated.
        """
        info.rev = secrets.token_hex(8)
        key = self.key(info.id, "info")
        with self._tags_lock:
            expected = self._tags.get(info.id)
        try:
            tag = self.storage.write_if(key, info.to_json(), tag=expected, durable=durable)
        except WriteConflict:
            self._tag(info.id, None)
            msg = "another server wrote this upload since: the write lease on it was lost"
            raise LeaseLost(msg) from None
        self._tag(info.id, tag)

    def _tag(self, upload_id: str, tag: str | None) -> None:
        with self._tags_lock:
            self._tags.pop(upload_id, None)
            if tag is not None:
                self._tags[upload_id] = tag
                while len(self._tags) > _TAGS_MAX:
                    self._tags.pop(next(iter(self._tags)))

    def ids(self) -> Iterator[str]:
        """Ids with an ``info`` object, page by page."""
        token: str | None = None
        while True:
            page = self.storage.list(self.prefix, token=token)
            for item in page.items:
                head, _, tail = item.key.removeprefix(self.prefix).partition("/")
                if tail == "info" and is_upload_id(head):
                    yield head
            token = page.next_token
            if token is None:
                return

    def _delete_key(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            self.storage.delete(key)

    # -- data -------------------------------------------------------------------------

    def data_key(self, info: UploadInfo) -> str:
        """Where the upload's bytes are assembled: ``<id>/data``, or its final key."""
        key = info.backend.get("key")
        return key if isinstance(key, str) else self.key(info.id, "data")

    def create(self, info: UploadInfo, *, final_key: str | None = None, unsaved: int = 0) -> None:
        """Begin the backend's resumable upload and save the state with its id.

        ``final_key``: where the finished object is to end up. A backend that cannot
        rename (S3, where a move is a copy of every byte) assembles the upload right
        there, so that finishing it moves nothing; the object appears at that key when
        the upload is finished, and once handed on (:meth:`hand_over`) it is no longer
        the store's. Elsewhere the upload is assembled at ``<id>/data`` as usual.
        ``unsaved``: the creating server's checkpoint interval; the part numbers a
        holder may use past its last saved state are fixed from it here, for every
        server (see :meth:`parts_ahead`).
        """
        # "tailed": whether a tail (<id>/tail.<start>) was ever written (_PartWriter.flush).
        backend: dict[str, Any] = {"parts": [], "tail": 0, "tailed": False}
        if final_key is not None and not self.storage.appendable:
            backend["key"] = final_key
        if not self.storage.appendable:
            backend["ahead"] = self.stray_parts(unsaved)
            if info.length is not None:
                self._check_fits(info.length, backend["ahead"])
        info.backend = backend
        key = self.data_key(info)
        backend["mpu"] = self.storage.begin_multipart(key, object_meta(info))
        try:
            self.save(info)
        except BaseException:
            # Nothing would ever name it: no one could resume or abort it.
            with contextlib.suppress(StorageError):
                self.storage.abort_multipart(key, backend["mpu"])
            raise

    def writer(self, info: UploadInfo, *, tail: bytes | None = None) -> DataWriter:
        """A writer appending the next bytes of the upload at ``info.offset``.

        ``tail``: the bytes of ``<id>/tail.<start>`` if the caller knows them (a writer's
        :attr:`DataWriter.tail` after the last request, nobody else having written
        since), so they are not read again.
        """
        if self.storage.appendable:
            return _AppendWriter(self, info)
        return _PartWriter(self, info, tail)

    def tail_key(self, upload_id: str, start: int) -> str:
        """The key of the tail beginning at byte ``start`` of the upload.

        Named by where it begins: a request that sent a part and wrote the bytes after
        it as a new tail, then died before saving its state, leaves that tail under
        another name, and the next request still finds the tail its state describes
        (the tail beginning at a given byte only ever grows).
        """
        return self.key(upload_id, f"tail.{start}")

    def _read_tail(self, info: UploadInfo) -> bytes:
        size = int(info.backend.get("tail", 0))
        if not size:
            return b""
        # A tail written by a request that died before saving its state may be longer;
        # one written late by a holder that lost the lease (after the state counting a
        # longer one was saved) may be shorter: see _fall_back_to_tail.
        try:
            tail = self.storage.read_bytes(self.tail_key(info.id, info.offset - size))
        except ObjectNotFound:
            tail = b""
        return tail[:size]

    def _fall_back_to_tail(self, info: UploadInfo, tail: bytes) -> None:
        """Move ``info`` back to where ``tail`` ends if it is shorter than the state says.

        The bytes past it are gone: counted in ``fallbacks``, as a local upload's fall
        back to its last checkpoint, and the client resends them (a 409, then HEAD).
        """
        lost = int(info.backend.get("tail", 0)) - len(tail)
        if lost > 0:
            info.offset -= lost
            info.synced = min(info.synced, info.offset)
            info.backend["tail"] = len(tail)
            info.backend["fallbacks"] = int(info.backend.get("fallbacks", 0)) + 1

    def _delete_tails(self, upload_id: str) -> None:
        # Those of requests that died before saving their state too.
        prefix = self.key(upload_id, "tail")
        token: str | None = None
        while True:
            page = self.storage.list(prefix, token=token)
            for item in page.items:
                self._delete_key(item.key)
            token = page.next_token
            if token is None:
                return

    def skip_parts(self, info: UploadInfo, unsaved: int) -> None:
        """Number the upload's next parts past any its last holder could still be sending.

        After a takeover from a holder that never let the lease go (frozen with an
        UploadPart on the wire): a part of its landing late would replace the part of
        the same number written since. A fenced writer never numbers a part more than
        :meth:`stray_parts` of ``unsaved`` past the state it saved last, so those are
        skipped. The new floor is saved first, so it holds through a further takeover,
        even when it leaves no room: a 409 then (:meth:`check_part_numbers`), and for
        every later request, never a part on a number the old holder may still use.
        """
        if self.storage.appendable:
            return
        info.backend["floor"] = _last_number(info.backend) + self.parts_ahead(info, unsaved)
        self.save(info)
        self.check_part_numbers(info)

    def _check_fits(self, length: int, ahead: int) -> None:
        # Refused at creation, not with a 409 once most of it was sent: a takeover may
        # skip ``ahead`` numbers, and the last bytes may take one more.
        most = (_MAX_PART_NUMBER - ahead - 1) * self.part_size
        if length > most:
            msg = (
                f"an upload of {length} bytes does not fit in this storage's "
                f"{_MAX_PART_NUMBER} parts of {self.part_size} bytes (at most {most})"
            )
            raise TusError(msg, status=413)

    def check_part_numbers(self, info: UploadInfo) -> None:
        """A 409 if the rest of the upload no longer fits in S3's 10,000 part numbers.

        Checked before a request writes anything (the parts of its known length, one
        more for the tail), and again by the writer before each part.
        """
        if self.storage.appendable:
            return
        needed = 1
        if info.length is not None:
            needed += -(-(info.length - info.offset) // self.part_size)
        if _last_number(info.backend) + needed > _MAX_PART_NUMBER:
            raise _out_of_part_numbers()

    def stray_parts(self, unsaved: int) -> int:
        """How many part numbers a holder may use past the state it saved last.

        Those of ``unsaved`` bytes (the checkpoint interval), one part partly filled,
        one of the last batch and those on their way: a writer fenced with
        :meth:`DataWriter.fence_with` never goes further, and a takeover skips as many
        (:meth:`skip_parts`).
        """
        return -(-unsaved // self.part_size) + 2 + _SENDING_EACH

    def parts_ahead(self, info: UploadInfo, unsaved: int) -> int:
        """The part numbers any holder of ``info`` may use past the state it saved last.

        Fixed in the state at creation, so that servers with other checkpoint
        intervals or part sizes (a rolling change of ``--tus-checkpoint``) bound their
        writes and skip on a takeover by the same count; :meth:`stray_parts` of
        ``unsaved`` (this server's interval) for an upload created without it.
        """
        recorded = info.backend.get("ahead")
        if isinstance(recorded, int) and recorded > 0:
            return recorded
        return self.stray_parts(unsaved)

    def resumable_offset(self, info: UploadInfo) -> int:
        """The offset the upload can go on from: ``info.offset``, or its last checkpoint.

        Bytes counted in a state saved between checkpoints may be gone after a power
        loss (local storage, whose data file is then shorter: one ``stat``); the client
        resumes from the checkpoint (``info.synced``).
        """
        if not self.storage.appendable or info.synced >= info.offset or info.backend.get("done"):
            return info.offset
        size = self.storage.written_size(self.data_key(info), str(info.backend["mpu"]))
        return info.synced if size is not None and size < info.offset else info.offset

    def fall_back(self, info: UploadInfo) -> bool:
        """Move ``info`` back to its last checkpoint if the bytes after it are gone.

        Counted in ``fallbacks`` (a hash of the bytes before the old offset may no
        longer hold); the caller saves the state. Whether it fell back.
        """
        offset = self.resumable_offset(info)
        if offset == info.offset:
            return False
        info.backend["fallbacks"] = int(info.backend.get("fallbacks", 0)) + 1
        info.offset = offset
        return True

    def finish(self, info: UploadInfo, *, sha256: str | None = None) -> ObjectInfo | None:
        """Complete the upload's object from what was written (and save the state).

        ``sha256`` is recorded as the object's digest when the caller hashed the bytes.
        Returns the finished object (``None`` if it was finished before).
        """
        backend = info.backend
        if backend.get("done"):
            return None
        # First say the upload is whole (the PATCH that completed it saved nothing):
        # a server dying once the backend completed it, before the save below, leaves a
        # state its next HEAD finishes, not one whose client resends bytes to a
        # multipart upload (or local folder) that no longer exists.
        self.save(info, durable=False)
        key = self.data_key(info)
        finished: ObjectInfo | None = None
        if self.storage.appendable:
            parts = [PartInfo(1, info.offset, "append")]
        else:
            tail = self._read_tail(info)
            if len(tail) != int(backend.get("tail", 0)):
                msg = f"the tail of upload {info.id} is shorter than its state says"
                raise StorageError(msg)
            parts = [PartInfo(int(n), int(s), str(e)) for n, s, e in backend["parts"]]
            if tail:
                number = _last_number(backend) + 1
                parts.append(self.storage.upload_part(key, backend["mpu"], number, tail))
        if info.offset and parts:
            try:
                finished = self.storage.complete_multipart(
                    key, backend["mpu"], parts, sha256=sha256
                )
            except StorageError:
                if not self._completed(key, info):
                    raise
                # Completed before, its answer lost (or its server died before saving
                # so): the backend no longer knows the upload (the local folder was
                # renamed into place), the object is whole.
        else:
            # An empty upload: S3 cannot complete a multipart upload without parts.
            self.storage.abort_multipart(key, backend["mpu"])
            finished = self.storage.write(key, b"", object_meta(info))
        tailed = backend.pop("tailed", True)  # unknown (saved before it was kept): maybe
        backend.update(done=True, tail=0, parts=[])
        info.synced = info.offset
        self.save(info)
        if not self.storage.appendable and tailed:
            self._delete_tails(info.id)
        return finished

    def _completed(self, key: str, info: UploadInfo) -> bool:
        try:
            return self.storage.stat(key).size == info.offset
        except StorageError:
            return False

    def open(self, info: UploadInfo, *, start: int = 0) -> BinaryIO:
        """Read the completed upload (from byte ``start``)."""
        return self.storage.open(self.data_key(info), start=start)

    def read_written(self, info: UploadInfo, start: int, end: int) -> BinaryIO | None:
        """Read bytes ``start`` to ``end`` of the unfinished upload, if the backend can.

        ``None`` on S3 (parts cannot be read before the upload is completed).
        """
        return self.storage.open_written(self.data_key(info), str(info.backend["mpu"]), start, end)

    def uploaded_file(
        self, info: UploadInfo, file_info: FileInfo, finished: ObjectInfo | None = None
    ) -> UploadedFile:
        """A :class:`~spoolup.storage.handler.StoredFile` over the completed upload.

        Its ``storage`` and ``key`` let the completion callback keep the object where
        it is (its final key) or move it there
        (:meth:`~spoolup.storage.base.Storage.move`: a rename or a server-side copy)
        rather than copy the bytes through this process. ``finished``: the object as
        :meth:`finish` returned it (else it is described again).
        """
        stored = finished if finished is not None else self.storage.stat(self.data_key(info))
        return StoredFile.from_object(file_info, self.storage, stored)

    def delete(self, upload_id: str) -> None:
        """Abort the resumable upload and delete every object of the upload.

        An object at a final key that was handed on (:meth:`hand_over`) is kept.
        """
        try:
            info = self.load(upload_id)
        except StateError:
            info = None
        if info is not None:
            key = self.data_key(info)
            if info.backend.get("mpu") and not info.backend.get("done"):
                self.storage.abort_multipart(key, info.backend["mpu"])
            if key != self.key(upload_id, "data") and not info.backend.get("handed"):
                self._delete_key(key)
        if not self.storage.appendable:
            self._delete_tails(upload_id)
        for name in ("data", "info", "lock"):
            self._delete_key(self.key(upload_id, name))
        self._tag(upload_id, None)

    def discard_data(self, info: UploadInfo) -> None:
        """Delete the finished upload's object (nobody keeps its bytes) but keep the state."""
        self._delete_key(self.data_key(info))
        info.backend["discarded"] = True
        self.save(info)

    def hand_over(self, info: UploadInfo, taken: UploadedFile) -> None:
        """The completion callback took the finished upload as ``taken``: the store lets
        it go.

        Its own ``<id>/data`` is deleted (the callback moved or copied it); an object
        at a final key now belongs to the callback and is never deleted by the store,
        if ``taken`` is that object (not the copy a storing handler kept: then it is
        nobody's, and deleted).
        """
        if "key" not in info.backend or not self._is_data(taken, info):
            self.discard_data(info)
            return
        info.backend.update(discarded=True, handed=True)
        self.save(info)

    def _is_data(self, file: UploadedFile, info: UploadInfo) -> bool:
        return (
            isinstance(file, StoredFile)
            and file.storage is self.storage
            and file.key == self.data_key(info)
        )

    def concat(
        self,
        final: UploadInfo,
        parts: list[UploadInfo],
        *,
        fence: Callable[[DataWriter], None] | None = None,
    ) -> str:
        """Fill ``final`` with the bytes of ``parts`` in order, finish it; return its sha256.

        A blocking copy through this process, one chunk at a time, hashed on the way.
        ``fence`` fences the writer (:meth:`DataWriter.fence_with`), as a PATCH's is.
        """
        out = self.writer(final)
        if fence is not None:
            fence(out)
        hasher = hashlib.sha256()
        try:
            for part in parts:
                with self.open(part) as src:
                    while chunk := src.read(COPY_SIZE):
                        hasher.update(chunk)
                        out.write(chunk)
            out.flush(final=True)
        finally:
            out.close()
        digest = hasher.hexdigest()
        self.finish(final, sha256=digest)
        return digest


def object_meta(info: UploadInfo) -> ObjectMeta:
    """The finished upload's file name (made safe) and type, as its object and file carry them."""
    return ObjectMeta(
        safe_filename(info.filename or info.id), (info.content_type or "").lower() or None
    )


def _out_of_part_numbers() -> TusError:
    msg = (
        "this upload's storage has no part numbers left (it was taken over from a "
        "server that stopped mid-write too often, or sent in too many small parts): "
        "upload it again"
    )
    return TusError(msg, status=409)


def _floor(backend: dict[str, Any]) -> int:
    """The part number past which this holder numbers its parts (see ``skip_parts``)."""
    return int(backend.get("floor", 0))


def _last_number(backend: dict[str, Any]) -> int:
    """The number of the last part written or skipped: the next one is one more."""
    parts = backend.get("parts") or []
    return max(int(parts[-1][0]) if parts else 0, _floor(backend))


class DataWriter:
    """Streams one request's bytes onto an upload, from ``info.offset`` on.

    :meth:`write` appends; :attr:`offset` counts what was accepted. Nothing in
    ``info`` changes until :meth:`flush`, which makes every accepted byte reachable by
    another server and moves ``info.offset`` (the caller then saves the state).
    :meth:`snapshot` is the checkpoint: a copy of the state covering only bytes
    already made durable, to save while writing goes on.
    """

    def __init__(self, store: TusStore, info: UploadInfo) -> None:
        self.store = store
        self.info = info
        self.offset = info.offset
        self.key = store.data_key(info)
        self.tail: bytes | None = None
        """After :meth:`flush`: the bytes left in ``<id>/tail.<start>`` (``b""``: none), if any."""
        self._check: Callable[[], None] = _unfenced

    def fence_with(self, check: Callable[[], None], *, unsaved: int) -> None:
        """Call ``check`` (it raises once the write lease is lost) right before each
        write to storage, also those sent in the background; and never number a part
        more than :meth:`TusStore.parts_ahead` past the state saved last
        (a writer there waits for the checkpoint's save, or saves one itself), so that a
        part still on its way after a takeover lands on a number the new holder skips.
        """
        self._check = check

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        raise NotImplementedError

    def write_chunks(self, chunks: Sequence[bytes]) -> None:
        """Append each of ``chunks`` in turn."""
        for chunk in chunks:
            self.write(chunk)

    def snapshot(self) -> UploadInfo | None:
        """A copy of the state for a checkpoint, or ``None`` if it would not move on.

        Call between writes; :meth:`sync_snapshot` then makes it durable (it may run
        in another thread while writing goes on).
        """
        raise NotImplementedError

    def sync_snapshot(self) -> None:
        """Flush what a snapshot covers to stable storage (before saving it)."""

    def begin_save(self, snapshot: UploadInfo) -> bool:
        """Before saving ``snapshot`` (in another thread): ``False`` if the writer
        saved a newer state itself meanwhile (see :meth:`fence_with`), so it is not
        saved."""
        return True

    def end_save(self, snapshot: UploadInfo, *, saved: bool) -> None:
        """After :meth:`begin_save`: whether ``snapshot`` was saved."""

    def flush(self, *, final: bool = False, sync: bool = False) -> None:
        """Make every accepted byte reachable by other servers; update ``info``.

        ``sync`` also makes them durable (a checkpoint); ``final`` is the end of the
        request.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the writer (after :meth:`flush`)."""


def _unfenced() -> None:
    """No lease to check (a writer nobody fenced)."""


class _AppendWriter(DataWriter):
    """Local uploads: the bytes go onto the end of one file, synced at checkpoints."""

    def __init__(self, store: TusStore, info: UploadInfo) -> None:
        super().__init__(store, info)
        mpu = str(info.backend["mpu"])
        try:
            self._out: PartAppender = store.storage.open_append(self.key, mpu, info.offset)
        except StorageError:
            # Bytes counted in a state saved between checkpoints are gone (a power
            # loss): fall back to the last checkpoint; the client resumes from there.
            if info.synced >= info.offset:
                raise
            # Counted: a hash of the bytes before the old offset may no longer hold.
            info.backend["fallbacks"] = int(info.backend.get("fallbacks", 0)) + 1
            info.offset = info.synced
            self.offset = info.synced
            self._out = store.storage.open_append(self.key, mpu, info.offset)

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self.offset += len(data)

    def write_chunks(self, chunks: Sequence[bytes]) -> None:
        self._out.write_chunks(chunks)
        self.offset += sum(map(len, chunks))

    def snapshot(self) -> UploadInfo | None:
        if self.offset <= self.info.synced:
            return None
        return replace(self.info, offset=self.offset, synced=self.offset)

    def sync_snapshot(self) -> None:
        self._out.sync()

    def flush(self, *, final: bool = False, sync: bool = False) -> None:
        if sync:
            self._out.sync()
            self.info.synced = self.offset
        self.info.offset = self.offset

    def close(self) -> None:
        self._out.close()


class _PartWriter(DataWriter):
    """S3 uploads: parts of ``part_size``; bytes short of a part wait in ``<id>/tail.<start>``.

    A part is filled in place in a buffer of exactly ``part_size`` bytes and sent as it
    is, never reallocated or copied. Up to ``_SENDING_EACH`` full parts may be on their
    way (in :func:`~spoolup._io.io_pool`) while the next fills, so receiving does not
    wait for the store's answers; they are counted in order. Only while the process's
    part budget lends a buffer for the next part meanwhile: beyond, a part is sent in the
    writing thread and its buffer fills again, so memory stays near one part per upload.

    Fenced (:meth:`~DataWriter.fence_with`), the lease is checked right before each
    part goes out, and a part number is never more than ``_ahead`` past those of the
    state saved last (``_saved``): past it, the writer waits for the checkpoint being
    saved, or saves its state itself when none is under way.
    """

    def __init__(self, store: TusStore, info: UploadInfo, tail: bytes | None = None) -> None:
        super().__init__(store, info)
        if tail is None or len(tail) != int(info.backend.get("tail", 0)):
            tail = store._read_tail(info)
            store._fall_back_to_tail(info, tail)
            self.offset = info.offset
        self._part: bytearray | None = None
        self._filled = 0
        self._next: bytearray | None = None  # the buffer the next part fills
        if tail:
            self._part = _part_buffer(store.part_size)
            self._part[: len(tail)] = tail
            self._filled = len(tail)
        self._parts: list[list[object]] = [list(p) for p in info.backend["parts"]]
        self._in_parts = info.offset - len(tail)
        self._sending: list[tuple[Future[PartInfo], bytearray]] = []
        self._number = _last_number(info.backend)  # of the last part sent
        self._ahead: int | None = None  # no bound until fenced
        self._saved = self._number  # the last number in the state saved last
        self._saves = threading.Condition()
        self._checkpoint: UploadInfo | None = None  # handed out, not saved yet
        self._saving = False  # ... and its save under way

    def fence_with(self, check: Callable[[], None], *, unsaved: int) -> None:
        super().fence_with(check, unsaved=unsaved)
        self._ahead = self.store.parts_ahead(self.info, unsaved)

    def _upload(self, number: int, data: bytearray) -> PartInfo:
        self._check()  # right before it goes out: a part waits in the pool for a while
        return self.store.storage.upload_part(self.key, self.info.backend["mpu"], number, data)

    def _next_number(self) -> int:
        """The next part's number, once it is within ``_ahead`` of the state saved last."""
        number = self._number + 1
        if number > _MAX_PART_NUMBER:
            raise _out_of_part_numbers()
        ahead = self._ahead
        if ahead is None:
            return number
        with self._saves:
            while number > self._saved + ahead and self._saving:
                self._saves.wait(_SAVE_POLL)
                self._check()
            if number <= self._saved + ahead:
                return number
            # No save under way: save here (a checkpoint handed out but not begun
            # yet is left unsaved, so saves never cross).
            self._checkpoint = None
        self._sent()
        state = self._state()
        assert state is not None  # parts were sent since the state saved last
        self._check()
        self.store.save(state)
        with self._saves:
            self._saved = max(self._saved, _last_number(state.backend))
        return number

    def _sent(self, keep: int = 0) -> None:
        """Wait for the parts on their way, all but ``keep``, and count them in order.

        The error of a part is raised here.
        """
        while len(self._sending) > keep:
            sending, data = self._sending.pop(0)
            self._record(sending.result())
            _give_back(data, self.store.part_size)

    def _record(self, part: PartInfo) -> None:
        self._parts.append([part.number, part.size, part.etag])
        self._in_parts += part.size

    def _send(self, data: bytearray, *, wait: bool = False) -> None:
        self._sent(0 if wait else _SENDING_EACH - 1)
        number = self._number = self._next_number()
        size = self.store.part_size
        spare = None if wait else PROCESS_BUFFERS.spare(size)
        if spare is None:
            self._sent()
            self._record(self._upload(number, data))
            if len(data) == size:
                self._next = data
            return
        self._sending.append((io_pool().submit(self._upload, number, data), data))
        self._next = spare

    def write(self, data: bytes) -> None:
        self.offset += len(data)
        size = self.store.part_size
        with memoryview(data) as view:
            position = 0
            while position < len(view):
                if self._part is None:
                    free, self._next = self._next, None
                    self._part = free if free is not None else _part_buffer(size)
                    self._filled = 0
                take = min(size - self._filled, len(view) - position)
                self._part[self._filled : self._filled + take] = view[position : position + take]
                self._filled += take
                position += take
                if self._filled == size:
                    full, self._part, self._filled = self._part, None, 0
                    self._send(full)

    def _state(self) -> UploadInfo | None:
        # Parts are durable once sent (and counted); the bytes still in the buffer or on
        # their way are not counted.
        if self._in_parts <= self.info.offset:
            return None
        backend = {**self.info.backend, "parts": [list(p) for p in self._parts], "tail": 0}
        return replace(self.info, offset=self._in_parts, synced=self._in_parts, backend=backend)

    def snapshot(self) -> UploadInfo | None:
        state = self._state()
        if state is not None:
            with self._saves:
                self._checkpoint, self._saving = state, False
        return state

    def begin_save(self, snapshot: UploadInfo) -> bool:
        with self._saves:
            if self._checkpoint is not snapshot:
                return False
            self._saving = True
            return True

    def end_save(self, snapshot: UploadInfo, *, saved: bool) -> None:
        with self._saves:
            if saved:
                self._saved = max(self._saved, _last_number(snapshot.backend))
            if self._checkpoint is snapshot:
                self._checkpoint, self._saving = None, False
            self._saves.notify_all()

    def flush(self, *, final: bool = False, sync: bool = False) -> None:
        self._sent()
        part, filled = self._part, self._filled
        # The upload's last bytes go out as its last part, which may be short: no tail
        # object written now, read back and deleted when the upload is finished.
        last = filled and self.offset == self.info.length
        if part is not None and (filled >= self.store.storage.min_part_size or last):
            del part[filled:]  # cut in place: no copy
            self._part, self._filled = None, 0
            self._send(part, wait=True)
        elif part is not None and filled:
            with memoryview(part) as view:
                tail = bytes(view[:filled])
            start = self.offset - filled
            self._check()  # the parts sent just before may have taken a while
            self.store.storage.write(self.store.tail_key(self.info.id, start), tail)
            self.tail = tail
            # Saved with the state next; a tail of a request that died before is
            # removed with the upload (TusStore.delete) rather than at finish.
            self.info.backend["tailed"] = True
        if not self._filled:
            self.tail = b""
        backend = self.info.backend
        backend["parts"] = [list(p) for p in self._parts]
        backend["tail"] = self._filled
        self.info.offset = self.offset
        self.info.synced = self.offset

    def close(self) -> None:
        # Parts still on their way after a failed request are waited for, never left
        # writing after the request (and its lease) ended; they are not counted.
        sending, self._sending = self._sending, []
        for future, _ in sending:
            with contextlib.suppress(BaseException):
                future.result()
        # Only buffers whose upload is over go back (a failed one may still be read).
        for buffer in (self._part, self._next):
            if buffer is not None:
                _give_back(buffer, self.store.part_size)
        self._part = self._next = None
