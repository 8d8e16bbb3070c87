"""Straight to storage: file parts stream from the request into a storage backend.

::

    storage = LocalStorage("/srv/uploads")
    with spoolup.parse_form(body, content_type, handlers=[
        lambda: StorageHandler(storage),
    ]) as form:
        f = form.files["upload"]          # a StoredFile
        f.key, f.hashes["sha256"]         # where it is kept, and its digest

Each chunk goes to the backend's writer as it arrives (no temp copy; the writer
computes the sha256 on the way). The object is committed when the part ends; a file
dropped midway (a size or type check, ``SkipFile``, an error, the client leaving) is
aborted: nothing is left under its key, and no multipart upload stays open.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Mapping
from typing import BinaryIO

from spoolup.files import FileInfo, UploadedFile
from spoolup.handlers import StopFutureHandlers, UploadContext, UploadHandler
from spoolup.storage.base import Storage
from spoolup.storage.meta import ObjectInfo, ObjectMeta, validate_key
from spoolup.storage.ranges import RangeReader
from spoolup.storage.writer import ObjectWriter

__all__ = ["StorageHandler", "StoredFile", "random_key"]


def random_key(info: FileInfo) -> str:
    """The default key: 32 random hex digits, never anything the client sent."""
    return uuid.uuid4().hex


class _LazyReader(RangeReader):
    """Opens the stored object on the first read, so an unread file costs no request."""

    def __init__(self, storage: Storage, key: str, size: int) -> None:
        super().__init__(size)
        self._storage = storage
        self._key = key
        self._stream: BinaryIO | None = None

    def _read_at(self, pos: int, view: memoryview) -> int:
        if self._stream is None:
            self._stream = self._storage.open(self._key)
            self._stream.seek(pos)
        return self._stream.readinto(view)  # type: ignore[attr-defined,no-any-return]

    def _moved(self, old: int, new: int) -> None:
        if self._stream is not None:
            self._stream.seek(new)

    def _release(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class StoredFile(UploadedFile):
    """An :class:`~spoolup.files.UploadedFile` kept in a storage backend.

    Reads come from the stored object (opened on the first read). ``path`` is
    ``None`` and ``in_memory`` False; :meth:`close` releases the reader and never
    deletes the object (call :meth:`delete` for that).

    Attributes:
        key: the object's key in :attr:`storage`.
        storage: the backend holding it.
        object_info: what the backend returned at commit (size, sha256, metadata).
    """

    __slots__ = ("key", "object_info", "storage")

    key: str
    storage: Storage
    object_info: ObjectInfo

    @classmethod
    def from_object(cls, info: FileInfo, storage: Storage, stored: ObjectInfo) -> StoredFile:
        """The file described by ``info``, read back from ``stored`` in ``storage``."""
        reader = io.BufferedReader(_LazyReader(storage, stored.key, stored.size))
        file = cls.from_info(info, reader, size=stored.size, in_memory=False)
        assert isinstance(file, StoredFile)
        file.key = stored.key
        file.storage = storage
        file.object_info = stored
        return file

    def delete(self) -> None:
        """Close the file and remove the object from its storage."""
        self.close()
        self.storage.delete(self.key)


class StorageHandler(UploadHandler):
    """Streams every file part into ``storage`` as it arrives; takes the file.

    Args:
        storage: the backend to write to.
        key_func: gives the key of a file from its :class:`FileInfo`; random by
            default (:func:`random_key`). Whatever it returns is checked with
            :func:`~spoolup.storage.validate_key`; build keys from your own ids, not
            from the client's file name.
        metadata_func: gives free-form metadata to store with the object.
        keep_on_error: by default, when the upload fails after some files were
            committed (a later part too large, the client leaving), those objects are
            deleted too, so a failed request leaves nothing; True keeps them.

    ``file_complete`` returns a :class:`StoredFile` with ``hashes["sha256"]`` set.
    Put observers (size and type checks, progress) before it in the chain.
    """

    def __init__(
        self,
        storage: Storage,
        key_func: Callable[[FileInfo], str] = random_key,
        *,
        metadata_func: Callable[[FileInfo], Mapping[str, str]] | None = None,
        keep_on_error: bool = False,
    ) -> None:
        self.storage = storage
        self.key_func = key_func
        self.metadata_func = metadata_func
        self.keep_on_error = keep_on_error
        self._info: FileInfo | None = None
        self._writer: ObjectWriter | None = None
        self._committed: list[str] = []

    def upload_started(self, context: UploadContext) -> None:
        """Forget the previous request."""
        self._abort()
        self._committed = []

    def new_file(self, info: FileInfo) -> None:
        """Open a writer for the file under ``key_func(info)``; later handlers see nothing."""
        self._abort()
        key = validate_key(self.key_func(info))
        metadata = self.metadata_func(info) if self.metadata_func is not None else {}
        meta = ObjectMeta(info.filename, info.content_type, metadata)
        self._writer = self.storage.open_writer(key, meta)
        self._info = info
        raise StopFutureHandlers

    def receive_data_chunk(self, data: bytes, offset: int) -> bytes | None:
        """Write the chunk to storage; keeps it (returns None)."""
        assert self._writer is not None
        self._writer.write(data)
        return None

    def file_complete(self, size: int) -> UploadedFile | None:
        """Commit the object and return it as a :class:`StoredFile`."""
        writer, info = self._writer, self._info
        assert writer is not None
        assert info is not None
        self._writer = None
        stored = writer.commit()
        self._committed.append(stored.key)
        if stored.sha256 is not None:
            info.hashes["sha256"] = stored.sha256
        return StoredFile.from_object(info, self.storage, stored)

    def file_skipped(self) -> None:
        """Abort the file being written."""
        self._abort()

    def upload_complete(self) -> None:
        """Nothing is held once the body is parsed; the stored objects stay."""
        # The committed keys are kept (until the next upload_started): a handler
        # after this one may still fail its upload_complete, and the upload is then
        # interrupted after all.
        self._abort()

    def upload_interrupted(self) -> None:
        """Abort the file in progress and, unless ``keep_on_error``, delete this request's."""
        self._abort()
        committed, self._committed = self._committed, []
        if not self.keep_on_error:
            error: Exception | None = None
            for key in committed:
                try:
                    self.storage.delete(key)
                except Exception as exc:  # delete the others all the same
                    if error is None:
                        error = exc
            if error is not None:
                raise error

    def _abort(self) -> None:
        writer, self._writer = self._writer, None
        self._info = None
        if writer is not None:
            writer.abort()
