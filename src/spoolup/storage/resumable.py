"""Resumable uploads: a storage capability of its own, what tus needs of a backend.

Parts may arrive over several requests, from several processes. Parts are numbered
from 1 and are at least :attr:`ResumableStorage.min_part_size` bytes, except the last
one. Both built-in backends are resumable; a backend that is not still stores files.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Sequence
from typing import BinaryIO

from spoolup.storage.base import Storage
from spoolup.storage.errors import StorageError
from spoolup.storage.meta import ObjectInfo, ObjectMeta, PartInfo

__all__ = ["PartAppender", "ResumableStorage", "WriteConflict"]


class WriteConflict(StorageError):
    """A conditional write found the object changed (or gone) since it was read."""

    status = 409


class PartAppender(abc.ABC):
    """Streams bytes onto the end of a resumable upload (see
    :meth:`ResumableStorage.open_append`).

    ``size`` is the upload's size so far. :meth:`sync` makes every byte written so
    far durable; :meth:`close` releases the writer without syncing.
    """

    size: int

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Append ``data``."""

    def write_chunks(self, chunks: Sequence[bytes]) -> None:
        """Append each of ``chunks`` in turn (a backend may do it in one system call)."""
        for chunk in chunks:
            self.write(chunk)

    @abc.abstractmethod
    def sync(self) -> None:
        """Flush every byte written so far to stable storage."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the writer (what was written stays; nothing is synced)."""


class ResumableStorage(Storage):
    """A :class:`~spoolup.storage.base.Storage` that also keeps multipart uploads."""

    min_part_size: int = 1
    """Smallest size of a part that is not the last one."""

    @abc.abstractmethod
    def begin_multipart(self, key: str, meta: ObjectMeta | None = None) -> str:
        """Start a resumable upload to ``key``; return its upload id (store it)."""

    @abc.abstractmethod
    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> PartInfo:
        """Store part ``number`` of the upload (uploading a number again replaces it).

        Keep the returned :class:`PartInfo` and complete with those: after a part
        was sent twice, some S3 servers (SeaweedFS) list both uploads of it.
        """

    @abc.abstractmethod
    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """The parts stored so far, by number; raises ``ObjectNotFound`` if unknown."""

    @abc.abstractmethod
    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[PartInfo] | None = None,
        *,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Publish the object from its parts (all stored parts when ``parts`` is None).

        ``sha256`` is recorded as the object's digest when the caller knows it (the
        parts arrived in several processes, so the backend cannot hash them on the way).
        """

    @abc.abstractmethod
    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discard the upload and every part; unknown ids are not an error."""

    appendable: bool = False
    """Whether :meth:`open_append` streams a resumable upload's bytes in place."""

    def open_append(self, key: str, upload_id: str, offset: int) -> PartAppender:
        """Append to the resumable upload from byte ``offset`` (backends whose uploads are
        one growing file; see :attr:`appendable`).

        Bytes past ``offset`` (written by a request that died before its offset was
        saved) are cut off first. Complete such an upload with one
        :class:`PartInfo` of the whole size. Raises ``StorageError`` if the
        upload holds fewer than ``offset`` bytes.
        """
        raise NotImplementedError

    def written_size(self, key: str, upload_id: str) -> int | None:
        """The bytes an unfinished resumable upload holds, if the backend can tell at
        once (one ``stat`` of a growing file; ``None`` otherwise, or if it is gone).

        For the tus app: bytes counted before a power loss may no longer be there.
        """
        return None

    def read_tagged(self, key: str) -> tuple[bytes, str | None]:
        """A small object's bytes and the tag :meth:`write_if` compares (``None``: none).

        For the tus state: a save lands only over the state its writer last saw.
        """
        return self.read_bytes(key), None

    def write_if(
        self, key: str, data: bytes, *, tag: str | None, durable: bool = True
    ) -> str | None:
        """Write a small object only if it is still the one ``tag`` names; its new tag.

        ``tag=None`` writes whatever is there. :class:`WriteConflict` if the object
        changed or went away since. A backend without conditional writes (local
        storage, whose servers share one machine's leases) writes as :meth:`write`
        does and returns ``None``.
        """
        self.write(key, data, durable=durable)
        return None

    def open_written(self, key: str, upload_id: str, start: int, end: int) -> BinaryIO | None:
        """Read bytes ``start`` to ``end`` of an unfinished resumable upload, if the backend
        can (``None``: only once completed, as on S3, whose parts cannot be read).

        For the tus app: the bytes another server wrote, to go on hashing them.
        """
        return None
