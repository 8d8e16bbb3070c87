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

from spoolup._storing import StoringHandler
from spoolup.files import FileInfo, UploadedFile
from spoolup.storage.base import Storage
from spoolup.storage.meta import ObjectInfo, ObjectMeta, validate_key
from spoolup.storage.ranges import LazyRangeReader
from spoolup.storage.writer import ObjectWriter

__all__ = ["StorageHandler", "StoredFile", "random_key"]


def random_key(info: FileInfo) -> str:
    """The default key: 32 random hex digits, never anything the client sent."""
    return uuid.uuid4().hex


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
        key = stored.key
        reader = io.BufferedReader(LazyRangeReader(lambda: storage.open(key), stored.size))
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


class StorageHandler(StoringHandler[ObjectInfo]):
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
        super().__init__(keep_on_error=keep_on_error)
        self.storage = storage
        self.key_func = key_func
        self.metadata_func = metadata_func

    def open_writer(self, info: FileInfo) -> ObjectWriter:
        """A writer for the object under ``key_func(info)``, with its metadata."""
        key = validate_key(self.key_func(info))
        metadata = self.metadata_func(info) if self.metadata_func is not None else {}
        return self.storage.open_writer(key, ObjectMeta(info.filename, info.content_type, metadata))

    def stored_file(self, info: FileInfo, committed: ObjectInfo, size: int) -> UploadedFile:
        """The committed object as a :class:`StoredFile`, its sha256 in ``hashes``."""
        if committed.sha256 is not None:
            info.hashes["sha256"] = committed.sha256
        return StoredFile.from_object(info, self.storage, committed)

    def remove(self, committed: ObjectInfo) -> None:
        """Delete the object."""
        self.storage.delete(committed.key)
