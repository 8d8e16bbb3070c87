"""The storage errors: the client's (400) and the backend's (500, 404, 507).

Keys often come from a request (an id in a URL path) and file names and types from
the client, so a bad key or metadata is a :class:`~spoolup.MalformedRequest` (400):
:class:`InvalidKey`, :class:`InvalidMetadata`. Failures of the backend itself are
:class:`StorageError` (not an ``UploadError``: the client did nothing wrong), with
``status`` 500, or its subclasses :class:`ObjectNotFound` (404) and
:class:`InsufficientStorage` (507).
"""

from __future__ import annotations

from spoolup.errors import MalformedRequest

__all__ = [
    "InsufficientStorage",
    "InvalidKey",
    "InvalidMetadata",
    "ObjectNotFound",
    "StorageError",
]


class InvalidKey(MalformedRequest):
    """A storage key is not acceptable (400): empty, too long, absolute, ``..``, ..."""


class InvalidMetadata(MalformedRequest):
    """Object metadata cannot be stored (400): bad name, or too large for the backend."""


class StorageError(Exception):
    """The storage backend failed (500 by default); ``message`` says what and where."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ObjectNotFound(StorageError):
    """No object under this key (404)."""

    status = 404

    def __init__(self, key: str) -> None:
        super().__init__(f"no object under the key {key!r}")
        self.key = key


class InsufficientStorage(StorageError):
    """The backend is full (507)."""

    status = 507
