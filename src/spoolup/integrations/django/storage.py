"""``DjangoStorageHandler``: file parts stream straight into a Django storage.

::

    SPOOLUP = {"HANDLERS": ["spoolup.handlers.HashingHandler",
                            "spoolup.integrations.django.DjangoStorageHandler"]}
    # or per view:
    @upload_options(handlers=[functools.partial(DjangoStorageHandler, upload_to="backups/%Y/")])

How the bytes reach the storage, with no temp copy where the storage allows it:

- ``FileSystemStorage``: written beside the target (a dot-named temp file in the
  target's directory), fsynced, then linked into place under a free name (never
  over another file, unless the storage allows overwrites) and the temp name
  removed; ``FILE_UPLOAD_PERMISSIONS`` and ``FILE_UPLOAD_DIRECTORY_PERMISSIONS``
  apply. A reader never sees a partial file.
- django-storages' ``S3Storage``: a multipart upload through the storage's own
  client, bucket and ``location``, completed when the part ends and aborted on any
  failure (spoolup's S3 writer). The storage's ACL and object parameters are not
  applied; set them on the bucket.
- any other ``Storage``: spooled to a temp file (``FILE_UPLOAD_TEMP_DIR``), then
  given to its ``save()``.

Names are made as a ``FileField`` makes them: ``upload_to`` is a ``strftime``
directory or a callable ``upload_to(info, filename)`` (``info`` the part's
:class:`~spoolup.FileInfo`, standing where a ``FileField`` passes the instance)
returning the name, then the storage's ``generate_filename`` and
``get_available_name``. If the upload fails (a later part too large, the client
leaving), the files this request stored are deleted.
"""

from __future__ import annotations

import io
import os
import posixpath
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage, storages
from django.core.files.utils import validate_file_name

from spoolup._cleanup import SpoolFile
from spoolup._storing import FileWriter, StoringHandler
from spoolup.files import FileInfo, UploadedFile, _fsync_dir
from spoolup.storage.ranges import LazyRangeReader

__all__ = ["DjangoStorageHandler", "StoredFile"]

UploadTo = str | Callable[[FileInfo, str], str]


class StoredFile(UploadedFile):
    """A spoolup file kept in a Django storage: ``name`` there, read back on demand."""

    __slots__ = ("name", "storage")

    name: str
    storage: Storage


class _FileSystemWriter:
    """Beside the target, then a link into place under a free name."""

    def __init__(self, storage: FileSystemStorage, name: str) -> None:
        self._storage = storage
        self._name = name
        directory = Path(storage.path(name)).parent
        mode = storage.directory_permissions_mode
        if mode is not None:
            from django.utils._os import safe_makedirs

            safe_makedirs(directory, mode, exist_ok=True)
        else:
            directory.mkdir(parents=True, exist_ok=True)
        self._tmp = directory / f".{secrets.token_hex(8)}.spoolup-tmp"
        # 0o666 less the umask, as Django's own save when FILE_UPLOAD_PERMISSIONS is None.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        self._fd: int | None = os.open(self._tmp, flags, 0o666)

    def write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def commit(self) -> str:
        fd, self._fd = self._fd, None
        assert fd is not None
        try:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            full = self._link()
        except BaseException:
            self._tmp.unlink(missing_ok=True)  # a failed fsync or link leaves no temp file
            raise
        storage = self._storage
        try:
            if storage.file_permissions_mode is not None:
                full.chmod(storage.file_permissions_mode)
            _fsync_dir(full.parent)
        except BaseException:
            full.unlink(missing_ok=True)  # not handed to the form: nobody would remove it
            raise
        return str(os.path.relpath(full, storage.location)).replace(os.sep, "/")

    def _link(self) -> Path:
        """Put the temp file in place under a free name; the path it has now."""
        storage = self._storage
        name = storage.get_available_name(self._name)
        while True:
            full = Path(storage.path(name))
            if getattr(storage, "_allow_overwrite", False):
                self._tmp.replace(full)
                return full
            try:
                full.hardlink_to(self._tmp)  # fails if the name was taken meanwhile
            except FileExistsError:
                name = storage.get_available_name(name)
                continue
            self._tmp.unlink()
            return full

    def abort(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._tmp.unlink(missing_ok=True)


class _S3Writer:
    """django-storages' S3: spoolup's streamed multipart writer, on the storage's client."""

    def __init__(self, storage: Any, name: str, info: FileInfo) -> None:
        from storages.utils import clean_name

        from spoolup.storage.meta import ObjectMeta
        from spoolup.storage.s3 import S3Storage

        self._name = storage.get_available_name(name)
        key = storage._normalize_name(clean_name(self._name))
        backend = S3Storage(storage.bucket_name, client=storage.connection.meta.client)
        self._writer = backend.open_writer(key, ObjectMeta(info.filename, info.content_type))

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def commit(self) -> str:
        self._writer.commit()
        name: str = self._name
        return name

    def abort(self) -> None:
        self._writer.abort()


class _SaveWriter:
    """Any other storage: a temp file, then ``storage.save()``."""

    def __init__(self, storage: Storage, name: str) -> None:
        self._storage = storage
        self._name = name
        self._spool: SpoolFile | None = SpoolFile(dir=settings.FILE_UPLOAD_TEMP_DIR)

    def write(self, data: bytes) -> None:
        assert self._spool is not None
        self._spool.file.write(data)

    def commit(self) -> str:
        spool = self._spool
        assert spool is not None
        try:
            spool.file.seek(0)
            name = self._storage.save(self._name, File(spool.file, self._name))
        finally:
            self.abort()
        return str(name)

    def abort(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()


def _is_s3(storage: Storage) -> bool:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # pragma: no cover - django-storages is optional
        return False
    return isinstance(storage, S3Storage)


class DjangoStorageHandler(StoringHandler[str]):
    """Writes each file part into a Django storage as it arrives; takes the file.

    Args:
        storage: a ``Storage``, an alias of ``settings.STORAGES``, or ``None`` for
            ``default_storage``.
        upload_to: a directory (``strftime`` formatting applies, like
            ``FileField(upload_to=...)``) or a callable ``(info, filename) -> name``.

    ``file_complete`` returns a :class:`StoredFile` (``name``: where it is in the
    storage); in ``request.FILES`` it is a Django ``UploadedFile`` whose ``name`` is
    that stored name. Put observers (``HashingHandler``, size and type checks) before it.
    If the upload fails, the files this request stored are deleted.
    """

    def __init__(self, storage: Storage | str | None = None, upload_to: UploadTo = "") -> None:
        super().__init__()
        if storage is None:
            storage = default_storage
        elif isinstance(storage, str):
            storage = storages[storage]
        self.storage: Storage = storage
        self.upload_to = upload_to

    def _name(self, info: FileInfo) -> str:
        if callable(self.upload_to):
            name = self.upload_to(info, info.filename)
        else:
            directory = datetime.now().strftime(str(self.upload_to))
            name = posixpath.join(directory, info.filename)
        name = validate_file_name(name, allow_relative_path=True)
        generated: str = self.storage.generate_filename(name)
        return generated

    def open_writer(self, info: FileInfo) -> FileWriter[str]:
        """A writer under the name ``upload_to`` gives, the fastest way the storage allows."""
        name = self._name(info)
        storage = self.storage
        if isinstance(storage, FileSystemStorage):
            return _FileSystemWriter(storage, name)
        if _is_s3(storage):
            return _S3Writer(storage, name, info)
        return _SaveWriter(storage, name)

    def stored_file(self, info: FileInfo, committed: str, size: int) -> UploadedFile:
        """The file stored under the name ``committed``, read back on demand."""
        storage = self.storage

        def opener() -> BinaryIO:
            stream: BinaryIO = storage.open(committed, "rb")
            return stream

        reader: BinaryIO = io.BufferedReader(LazyRangeReader(opener, size))
        file = StoredFile.from_info(info, reader, size=size, in_memory=False)
        assert isinstance(file, StoredFile)
        file.name = committed
        file.storage = storage
        return file

    def remove(self, committed: str) -> None:
        """Delete the stored file."""
        self.storage.delete(committed)
