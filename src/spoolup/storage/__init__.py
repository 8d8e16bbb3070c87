"""Where kept uploads live: a local folder or an S3-compatible bucket, behind one interface.

::

    from spoolup.storage import LocalStorage, ObjectMeta, S3Storage

    storage = LocalStorage("/srv/uploads")           # or S3Storage("bucket", "prefix")
    info = storage.write("reports/2024.pdf", file, ObjectMeta(filename="2024.pdf"))
    with storage.open(info.key, start=0, end=1024) as stream:
        head = stream.read()

:class:`Storage` is the base class a backend implements (:mod:`spoolup.storage.base`),
:class:`ResumableStorage` one that also keeps resumable uploads (what tus needs);
:class:`ObjectMeta` is what a writer is told of an object (file name, type, metadata);
the errors are in :mod:`spoolup.storage.errors`, keys and records in
:mod:`spoolup.storage.meta`, writers in :mod:`spoolup.storage.writer` and range
readers in :mod:`spoolup.storage.ranges`. :class:`StorageHandler` streams file parts of
a request straight into a backend.
``S3Storage`` is imported on first use, so that boto3 is needed only by those who use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spoolup.storage.base import Storage
from spoolup.storage.errors import (
    InsufficientStorage,
    InvalidKey,
    InvalidMetadata,
    ObjectNotFound,
    StorageError,
)
from spoolup.storage.handler import StorageHandler, StoredFile, random_key
from spoolup.storage.local import LocalStorage
from spoolup.storage.meta import ListPage, ObjectInfo, ObjectMeta, PartInfo, validate_key
from spoolup.storage.resumable import ResumableStorage
from spoolup.storage.writer import AsyncObjectWriter, ObjectWriter

if TYPE_CHECKING:
    from spoolup.storage.s3 import S3Storage

__all__ = [
    "AsyncObjectWriter",
    "InsufficientStorage",
    "InvalidKey",
    "InvalidMetadata",
    "ListPage",
    "LocalStorage",
    "ObjectInfo",
    "ObjectMeta",
    "ObjectNotFound",
    "ObjectWriter",
    "PartInfo",
    "ResumableStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageHandler",
    "StoredFile",
    "random_key",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from spoolup.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
