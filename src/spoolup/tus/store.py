"""Where tus uploads live between requests: state and data (leases: :mod:`spoolup.tus.lock`).

:class:`TusStore` is the small blocking interface the tus app needs (the app runs it
in worker threads). :class:`LocalTusStore` keeps everything in one folder: the state as
``<id>.info`` JSON, the bytes received so far in an append-only ``<id>.part`` file
(and its lease in ``<id>.lock``). Because nothing is kept in memory, an upload survives a
restart, and two servers sharing the folder can take turns on one upload.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from spoolup.files import FileInfo, UploadedFile
from spoolup.storage.base import ObjectNotFound, PartInfo, Storage
from spoolup.storage.handler import StoredFile
from spoolup.tus.protocol import is_upload_id
from spoolup.tus.state import StateError, UploadInfo

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ChunkWriter", "LocalTusStore", "StorageTusStore", "TusStore"]

_COPY_CHUNK = 1024 * 1024


class ChunkWriter(ABC):
    """Appends one request's bytes to an upload, from ``info.offset`` on.

    ``write`` may be called many times; ``close`` makes what was written durable and
    moves ``info.offset`` (and ``info.backend``) forward; nothing else changes ``info``.
    """

    def __init__(self, info: UploadInfo) -> None:
        self.info = info
        self.written = 0

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append ``data``."""

    @abstractmethod
    def flush(self) -> None:
        """Make the bytes written so far durable and count them in ``info.offset``."""

    def close(self) -> None:
        """Flush and release the writer."""
        self.flush()

    def abandon(self) -> None:  # noqa: B027  (most writers hold nothing to release)
        """Release the writer without counting what was not flushed (the lease was lost)."""


class TusStore(ABC):
    """Blocking storage for tus uploads: state and data."""

    @abstractmethod
    def load(self, upload_id: str) -> UploadInfo | None:
        """The upload's state, or ``None`` if there is none; :class:`StateError` if damaged."""

    @abstractmethod
    def save(self, info: UploadInfo) -> None:
        """Store the upload's state atomically (a reader sees the old or the new one)."""

    @abstractmethod
    def ids(self) -> Iterator[str]:
        """Every upload id with state in the store."""

    @abstractmethod
    def create(self, info: UploadInfo) -> None:
        """Prepare storage for a new upload and save its state."""

    @abstractmethod
    def writer(self, info: UploadInfo) -> ChunkWriter:
        """A writer appending at ``info.offset``."""

    @abstractmethod
    def open(self, info: UploadInfo) -> BinaryIO:
        """The bytes received so far, for reading from the start."""

    @abstractmethod
    def delete(self, upload_id: str) -> None:
        """Remove the upload: data, state and lease. Missing pieces are no error."""

    @abstractmethod
    def finish(self, info: UploadInfo) -> None:
        """Make a finished upload's bytes readable with :meth:`open`."""

    def discard_data(self, info: UploadInfo) -> None:
        """Remove the upload's data but keep its state (after the data was handed on)."""
        info.backend["discarded"] = True
        self.save(info)

    def uploaded_file(self, info: UploadInfo, file_info: FileInfo) -> UploadedFile:
        """A finished upload's bytes as an :class:`~spoolup.files.UploadedFile`, unread.

        Closing it never removes the data. Stores override this to say where the bytes
        are, so that the completion callback can move them instead of copying.
        """
        return UploadedFile.from_info(file_info, self.open(info), size=info.offset, in_memory=False)

    def concat(self, final: UploadInfo, parts: list[UploadInfo]) -> None:
        """Fill ``final`` with the bytes of ``parts`` in order (a blocking copy)."""
        out = self.writer(final)
        try:
            for part in parts:
                with self.open(part) as src:
                    while chunk := src.read(_COPY_CHUNK):
                        out.write(chunk)
        finally:
            out.close()


class LocalTusStore(TusStore):
    """Uploads in one local folder, created if missing.

    ``<id>.info`` is replaced atomically (write beside, fsync, rename); ``<id>.part``
    grows by appends and is cut back to the saved offset before each request, so bytes
    written by a request that died before saving its offset are never counted twice.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, upload_id: str, suffix: str) -> Path:
        if not is_upload_id(upload_id):
            msg = f"not an upload id: {upload_id!r}"
            raise ValueError(msg)
        return self.root / f"{upload_id}{suffix}"

    def data_path(self, upload_id: str) -> Path:
        """Where the bytes of an upload are kept."""
        return self._path(upload_id, ".part")

    def load(self, upload_id: str) -> UploadInfo | None:
        """Read ``<id>.info``."""
        try:
            data = self._path(upload_id, ".info").read_bytes()
        except FileNotFoundError:
            return None
        info = UploadInfo.from_json(data)
        if info.id != upload_id:
            msg = "damaged upload state: wrong id"
            raise StateError(msg)
        return info

    def save(self, info: UploadInfo) -> None:
        """Write ``<id>.info`` beside, fsync, rename."""
        _atomic_write(self._path(info.id, ".info"), info.to_json())

    def ids(self) -> Iterator[str]:
        """Ids of every ``*.info`` file."""
        for path in self.root.glob("*.info"):
            if is_upload_id(path.stem):
                yield path.stem

    def create(self, info: UploadInfo) -> None:
        """An empty ``<id>.part`` and the state."""
        self.data_path(info.id).touch()
        self.save(info)

    def writer(self, info: UploadInfo) -> ChunkWriter:
        """Append to ``<id>.part`` from ``info.offset``."""
        return _LocalWriter(info, self.data_path(info.id))

    def open(self, info: UploadInfo) -> BinaryIO:
        """Open ``<id>.part``."""
        return self.data_path(info.id).open("rb")

    def delete(self, upload_id: str) -> None:
        """Unlink the three files."""
        for suffix in (".part", ".info", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                self._path(upload_id, suffix).unlink()

    def discard_data(self, info: UploadInfo) -> None:
        """Unlink ``<id>.part`` (if the completion handler has not moved it away)."""
        with contextlib.suppress(FileNotFoundError):
            self.data_path(info.id).unlink()
        super().discard_data(info)

    def finish(self, info: UploadInfo) -> None:
        """Nothing to do: ``<id>.part`` is readable as it is."""

    def uploaded_file(self, info: UploadInfo, file_info: FileInfo) -> UploadedFile:
        """The file over ``<id>.part``, with ``path`` set (``save`` then renames it)."""
        source = self.open(info)
        return UploadedFile.from_info(
            file_info, source, size=info.offset, path=self.data_path(info.id), in_memory=False
        )

    def move_data(self, info: UploadInfo, dest: Path) -> Path:
        """Move a finished upload's bytes to ``dest`` (a rename when on the same disk)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(self.data_path(info.id), dest))


class _LocalWriter(ChunkWriter):
    def __init__(self, info: UploadInfo, path: Path) -> None:
        super().__init__(info)
        self._start = info.offset
        self._file = path.open("r+b")
        self._file.truncate(info.offset)
        self._file.seek(info.offset)
        self._flushed = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.written += len(data)

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self.info.offset = self._start + self.written
        self._flushed = self.written

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()

    def abandon(self) -> None:
        self._file.close()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class StorageTusStore(TusStore):
    """Uploads kept in a spoolup :class:`~spoolup.storage.base.Storage` (local or S3).

    Under ``prefix`` + ``<id>/``: ``info`` (the state), ``lock`` (its lease) and, while
    bytes wait for a part of ``min_part_size``, ``tail``. The bytes themselves go into
    the backend's resumable (multipart) upload to ``<id>/data``, whose id is kept in
    the state, so any server sharing the storage continues the upload. At most one
    part is held in memory; the tail object keeps the bytes short of a part between
    requests. A finished upload is completed into the object ``<id>/data``.
    """

    def __init__(self, storage: Storage, *, prefix: str = "tus/", part_size: int = 0) -> None:
        self.storage = storage
        self.prefix = prefix
        floor = storage.min_part_size
        # Backends with no minimum (local) take each request's bytes as one part; S3's
        # 5 MiB minimum is raised a little so 10 GiB fit in far fewer than 10,000 parts.
        self.part_size = part_size or (0 if floor <= 1 else max(floor, 8 * 1024 * 1024))

    def key(self, upload_id: str, name: str) -> str:
        """The storage key of one of the upload's objects."""
        if not is_upload_id(upload_id):
            msg = f"not an upload id: {upload_id!r}"
            raise ValueError(msg)
        return f"{self.prefix}{upload_id}/{name}"

    def load(self, upload_id: str) -> UploadInfo | None:
        """Read ``<id>/info``."""
        try:
            data = self.storage.read_bytes(self.key(upload_id, "info"))
        except ObjectNotFound:
            return None
        info = UploadInfo.from_json(data)
        if info.id != upload_id:
            msg = "damaged upload state: wrong id"
            raise StateError(msg)
        return info

    def save(self, info: UploadInfo) -> None:
        """Write ``<id>/info`` (the backend's writes are atomic)."""
        self.storage.write(self.key(info.id, "info"), info.to_json())

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

    def create(self, info: UploadInfo) -> None:
        """Begin the backend's resumable upload and save the state with its id."""
        mpu = self.storage.begin_multipart(
            self.key(info.id, "data"),
            filename=info.filename,
            content_type=info.content_type,
        )
        info.backend = {"mpu": mpu, "parts": [], "tail": 0}
        self.save(info)

    def writer(self, info: UploadInfo) -> ChunkWriter:
        """Append through parts (and the tail object)."""
        return _PartWriter(self, info)

    def finish(self, info: UploadInfo) -> None:
        """Send the tail as the last part and complete the object ``<id>/data``."""
        backend = info.backend
        if backend.get("done"):
            return
        key = self.key(info.id, "data")
        tail = self._read_tail(info)
        parts = [PartInfo(int(n), int(s), str(e)) for n, s, e in backend["parts"]]
        if tail:
            parts.append(self.storage.upload_part(key, backend["mpu"], len(parts) + 1, tail))
        if parts:
            self.storage.complete_multipart(key, backend["mpu"], parts)
        else:
            # An empty upload: S3 cannot complete a multipart upload without parts.
            self.storage.abort_multipart(key, backend["mpu"])
            self.storage.write(key, b"", filename=info.filename, content_type=info.content_type)
        backend.update(done=True, tail=0, parts=[[p.number, p.size, p.etag] for p in parts])
        self.save(info)
        self._delete_key(self.key(info.id, "tail"))

    def _read_tail(self, info: UploadInfo) -> bytes:
        size = int(info.backend.get("tail", 0))
        if not size:
            return b""
        # A tail written by a request that died before saving its state may be longer.
        return self.storage.read_bytes(self.key(info.id, "tail"))[:size]

    def open(self, info: UploadInfo) -> BinaryIO:
        """Read the completed ``<id>/data``."""
        return self.storage.open(self.key(info.id, "data"))

    def uploaded_file(self, info: UploadInfo, file_info: FileInfo) -> UploadedFile:
        """A :class:`~spoolup.storage.handler.StoredFile` over the completed ``<id>/data``.

        Its ``storage`` and ``key`` let the completion callback move the object to its
        final key (:meth:`~spoolup.storage.base.Storage.move`: a rename or a
        server-side copy) rather than copy the bytes through this process.
        """
        stored = self.storage.stat(self.key(info.id, "data"))
        return StoredFile.from_object(file_info, self.storage, stored)

    def delete(self, upload_id: str) -> None:
        """Abort the resumable upload and delete every object of the upload."""
        try:
            info = self.load(upload_id)
        except StateError:
            info = None
        if info is not None and info.backend.get("mpu") and not info.backend.get("done"):
            self.storage.abort_multipart(self.key(upload_id, "data"), info.backend["mpu"])
        for name in ("data", "tail", "info", "lock"):
            self._delete_key(self.key(upload_id, name))

    def discard_data(self, info: UploadInfo) -> None:
        """Delete ``<id>/data`` once the completion callback has taken its bytes."""
        self._delete_key(self.key(info.id, "data"))
        super().discard_data(info)

    def concat(self, final: UploadInfo, parts: list[UploadInfo]) -> None:
        """Copy the completed partial uploads into ``final`` and finish it."""
        super().concat(final, parts)
        self.finish(final)


class _PartWriter(ChunkWriter):
    def __init__(self, store: StorageTusStore, info: UploadInfo) -> None:
        super().__init__(info)
        self.store = store
        self._start = info.offset
        self._key = store.key(info.id, "data")
        self._buffer = bytearray(store._read_tail(info))
        self._sent = 0  # bytes of this request already sent in parts

    def _send(self, data: bytes) -> None:
        backend = self.info.backend
        number = len(backend["parts"]) + 1
        part = self.store.storage.upload_part(self._key, backend["mpu"], number, data)
        backend["parts"].append([part.number, part.size, part.etag])

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.written += len(data)
        size = self.store.part_size
        while size and len(self._buffer) >= size:
            self._send(bytes(self._buffer[:size]))
            del self._buffer[:size]

    def flush(self) -> None:
        backend = self.info.backend
        if not self.store.part_size:
            if self._buffer:
                self._send(bytes(self._buffer))
                self._buffer.clear()
        elif self._buffer:
            self.store.storage.write(self.store.key(self.info.id, "tail"), bytes(self._buffer))
        backend["tail"] = len(self._buffer)
        self.info.offset = self._start + self.written
