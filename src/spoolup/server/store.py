"""The server's view of storage: file records kept as objects under ``files/<id>``.

:class:`RecordStore` turns a :class:`~spoolup.storage.base.Storage` backend into what
the API needs: records to list and describe, byte ranges to read, deletes, a health
check, and the handler that streams each uploaded file part into a fresh object
(sha256 computed on the way). Every method that touches storage runs it in a worker
thread. Keys are made here from server-generated ids, never from the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from spoolup.files import FileInfo, UploadedFile
from spoolup.server.config import ConfigError
from spoolup.server.records import FileRecord, is_file_id, new_file_id
from spoolup.storage import ObjectInfo, ObjectMeta, ObjectNotFound, Storage
from spoolup.storage.handler import StorageHandler, StoredFile

__all__ = ["FILES_PREFIX", "RecordStore", "open_store"]

FILES_PREFIX = "files/"
"""Where file objects live in storage; other prefixes (tus state) are not listed."""

_OCTET_STREAM = "application/octet-stream"
_COPY_CHUNK = 1024 * 1024


def open_store(spec: str) -> RecordStore:
    """The store for ``--storage``: a local folder, or ``s3://bucket/prefix``.

    S3 takes its endpoint and credentials from the standard ``AWS_*`` variables.
    Raises :class:`ConfigError` for a spec that names no usable backend.
    """
    if spec.startswith("s3://"):
        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        if not bucket:
            msg = f"--storage {spec!r} names no bucket (s3://bucket/prefix)"
            raise ConfigError(msg)
        from spoolup.storage.s3 import S3Storage

        return RecordStore(S3Storage(bucket, prefix=prefix))
    if "://" in spec:
        msg = f"--storage {spec!r}: give a folder or s3://bucket/prefix"
        raise ConfigError(msg)
    from pathlib import Path

    from spoolup.storage.local import LocalStorage

    return RecordStore(LocalStorage(Path(spec)))


def key_of(file_id: str) -> str:
    """The storage key of a file id."""
    return FILES_PREFIX + file_id


def _new_key(info: FileInfo | None) -> str:
    return key_of(new_file_id())


def _is_file_key(key: str) -> bool:
    return key.startswith(FILES_PREFIX) and is_file_id(key.removeprefix(FILES_PREFIX))


class RecordStore:
    """File records over a storage backend (see the module docstring)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def start(self) -> None:
        """Called when the server starts."""

    async def stop(self) -> None:
        """Called when the server stops."""

    async def check(self) -> None:
        """Raise if the storage does not answer (for ``/healthz``)."""
        await self.storage.alist(FILES_PREFIX, limit=1)

    @staticmethod
    def record(info: ObjectInfo) -> FileRecord:
        """The record of a stored object."""
        file_id = info.key.removeprefix(FILES_PREFIX)
        return FileRecord(
            id=file_id,
            filename=info.filename or file_id,
            size=info.size,
            content_type=info.content_type or _OCTET_STREAM,
            sha256=info.sha256 or "",
            created=info.created,
        )

    async def list(self) -> list[FileRecord]:
        """Every file record, newest first."""
        records: list[FileRecord] = []
        token = None
        while True:
            page = await self.storage.alist_with_metadata(FILES_PREFIX, token=token)
            records += [
                self.record(info)
                for info in page.items
                if is_file_id(info.key.removeprefix(FILES_PREFIX))
            ]
            token = page.next_token
            if token is None:
                break
        records.sort(key=lambda r: r.created, reverse=True)
        return records

    async def get(self, file_id: str) -> FileRecord | None:
        """The record of ``file_id``, or ``None`` when there is no such file."""
        try:
            return self.record(await self.storage.astat(key_of(file_id)))
        except ObjectNotFound:
            return None

    async def open(self, file_id: str, start: int, end: int) -> BinaryIO:
        """Open bytes ``start`` to ``end`` (exclusive) of the file; the caller closes it.

        Raises :class:`~spoolup.storage.ObjectNotFound` if the file is gone.
        """
        return await self.storage.aopen(key_of(file_id), start=start, end=end)

    async def delete(self, file_id: str) -> bool:
        """Remove the file; ``False`` if there was none."""
        key = key_of(file_id)
        if not await self.storage.aexists(key):
            return False
        await self.storage.adelete(key)
        return True

    def handler(
        self,
        *,
        key_func: Callable[[FileInfo], str] = _new_key,
        metadata_func: Callable[[FileInfo], Mapping[str, str]] | None = None,
    ) -> StorageHandler:
        """The handler (for one request) that streams each file part to ``files/<id>``.

        ``key_func`` gives each file's key (a fresh ``files/<id>`` by default),
        ``metadata_func`` its free-form metadata (the hooks' ids and metadata). Objects
        committed by a request that then fails are deleted again.
        """
        return StorageHandler(self.storage, key_func=key_func, metadata_func=metadata_func)

    def new_key(self, info: object = None) -> str:
        """A fresh ``files/<id>`` key (for a tus upload to end up at, chosen at creation)."""
        return _new_key(None)

    async def adopt(self, uploaded: UploadedFile, info: object = None) -> dict[str, Any]:
        """Keep a file received another way (a finished tus upload) as a new record.

        A file already in this store's storage (a :class:`StoredFile`, as the tus app
        hands over) stays where it is when it lies at a file key (a tus upload
        assembled at its final key, see :meth:`new_key`), and is moved to a fresh
        ``files/<id>`` otherwise, with :meth:`~spoolup.storage.base.Storage.move` (a
        rename, or a server-side copy on S3); its sha256 is taken from
        ``uploaded.hashes`` (the handlers' pass). Any other file is copied, in chunks
        and in a worker thread. Returns the record as JSON (the tus app keeps it with
        the upload).
        """
        content_type = uploaded.content_type or _OCTET_STREAM
        sha256 = uploaded.hashes.get("sha256")
        if isinstance(uploaded, StoredFile) and uploaded.storage is self.storage:
            if _is_file_key(uploaded.key):
                kept = uploaded.object_info
                if sha256 is None or kept.sha256 == sha256:
                    return self.record(kept).to_json()
                # Hashed only after it was finished (another server received some of
                # it): a move onto itself records the digest (a tag on S3, no copy).
                key = uploaded.key
            else:
                key = _new_key(None)
            moved = await self.storage.amove(
                uploaded.key,
                key,
                meta=ObjectMeta(filename=uploaded.filename, content_type=content_type),
                sha256=sha256,
            )
            return self.record(moved).to_json()
        key = _new_key(None)

        def copy() -> ObjectInfo:
            return self.storage.write(
                key,
                uploaded.chunks(_COPY_CHUNK),
                meta=ObjectMeta(filename=uploaded.filename, content_type=content_type),
            )

        return self.record(await asyncio.to_thread(copy)).to_json()

    def record_of(self, uploaded: UploadedFile) -> FileRecord:
        """The record of a file stored by :meth:`handler`."""
        assert isinstance(uploaded, StoredFile)
        return self.record(uploaded.object_info)
