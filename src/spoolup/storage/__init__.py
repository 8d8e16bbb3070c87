"""Where kept uploads live: a local folder or an S3-compatible bucket, behind one interface.

::

    from spoolup.storage import LocalStorage, S3Storage

    storage = LocalStorage("/srv/uploads")           # or S3Storage("bucket", "prefix")
    info = storage.write("reports/2024.pdf", file, filename="2024.pdf")
    with storage.open(info.key, start=0, end=1024) as stream:
        head = stream.read()

:class:`Storage` is the base class a backend implements (see :mod:`spoolup.storage.base`);
:class:`StorageHandler` streams file parts of a request straight into a backend.
``S3Storage`` is imported on first use, so that boto3 is needed only by those who use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spoolup.storage.base import (
    AsyncObjectWriter,
    InsufficientStorage,
    InvalidKey,
    InvalidMetadata,
    ListPage,
    ObjectInfo,
    ObjectNotFound,
    ObjectWriter,
    PartInfo,
    Storage,
    StorageError,
    validate_key,
)
from spoolup.storage.handler import StorageHandler, StoredFile, random_key
from spoolup.storage.local import LocalStorage

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
    "ObjectNotFound",
    "ObjectWriter",
    "PartInfo",
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
