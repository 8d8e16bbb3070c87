"""A storage backend over any S3-compatible object store (AWS, MinIO, Ceph, R2, SeaweedFS).

Built on boto3/botocore, which read the endpoint and credentials from the standard
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, or a profile), so the same code runs against AWS and a local server.

**Streaming writes.** A writer fills one part of ``part_size`` bytes at a time (doubled
after every 1,000 parts, see :meth:`S3Storage.part_size_of`); each
full part is sent by ``upload_part`` in a worker thread while the next one fills,
with at most ``concurrency`` parts in flight. Part buffers come from one pool for the
process (:mod:`spoolup._part_buffers`): a writer always has one part of its own, and
borrows the others only while the process holds less than
:data:`~spoolup._io.PART_BUDGET` (64 MiB) of parts; past it, a writer waits for its
own part to be sent before filling the next. So memory stays near
``(concurrency + 1) * part_size`` for one write, and near one part per write when
many run at once, whatever the objects' sizes. The multipart upload is
created with the first full part and completed only when the whole stream is in; any
failure (the source raising, the client leaving, a part refused) aborts it, so no
object and no incomplete upload is left. An object smaller than one part is sent
with a single ``put_object`` at commit. An abort that fails (the store is down) is
retried a few times, then remembered; :meth:`S3Storage.cleanup` retries the remembered
ones and aborts every incomplete upload under the prefix older than ``stale_after``
that this process is not writing and the caller does not name as live. A lifecycle
rule (``AbortIncompleteMultipartUpload`` after a day) on the bucket does no harm.

**Owned writes.** A process killed mid-write (``kill -9``) cannot abort its upload,
and no other process can tell it from one still being written, but by its age. After
:meth:`S3Storage.own_writes`, each streamed write (and each copy in parts) holds a
short lease (:class:`~spoolup.storage.leases.HeldLeases`) on its multipart upload,
``<prefix>writes/<hash of the upload id>/lock``, renewed in the background while the
write lives: :meth:`S3Storage.cleanup` in any process aborts at once an upload whose
lease ran out, and removes leases whose upload is gone.

**Metadata** is S3 user metadata (``x-amz-meta-*``): ``filename`` and free-form
values percent-encoded into ASCII, the content type as ``Content-Type``. The sha256
of a single-request object is in its metadata; for a multipart object it is known only
at the end, after S3 metadata is fixed, so it is stored as the object tag ``sha256``
(mutable, one cheap request); on an endpoint without tagging, ``stat`` reports
``sha256=None`` for those objects (the writer's ``commit`` still returns it).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import io
import logging
import threading
import time
import unicodedata
from collections.abc import Container, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import UTC, datetime
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from spoolup._io import io_pool
from spoolup._part_buffers import PROCESS_BUFFERS, PartBuffers
from spoolup.storage.errors import InvalidKey, ObjectNotFound, StorageError
from spoolup.storage.leases import (
    ConditionalWritesUnsupported,
    HeldLeases,
    Lease,
    ObjectLock,
    _S3Cells,
)
from spoolup.storage.meta import (
    ListPage,
    ObjectInfo,
    ObjectMeta,
    PartInfo,
    decode_metadata_value,
    encode_metadata_value,
    validate_key,
)
from spoolup.storage.ranges import RangeReader, check_range
from spoolup.storage.resumable import ResumableStorage, WriteConflict
from spoolup.storage.writer import ObjectWriter

__all__ = ["S3Storage"]

logger = logging.getLogger("spoolup.storage")
# Pauses between the attempts to abort a multipart upload before it is left to cleanup.
_ABORT_PAUSES = (0.2, 1.0)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
# A streamed write doubles its part size after every this many parts: 10,000 parts of
# a fixed 8 MiB would end every object at 78 GiB, doubling takes them past S3's 5 TiB.
PARTS_PER_SIZE = 1000
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
# What a store answers a conditional write whose object changed, or is gone.
_CONFLICT = frozenset(
    {"412", "PreconditionFailed", "409", "ConditionalRequestConflict", "404", "NoSuchKey"}
)
_BAD_CREDENTIALS = frozenset(
    {"403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden"}
)


@contextlib.contextmanager
def _errors(what: str, key: str | None = None) -> Iterator[None]:
    """Turn botocore's exceptions into :class:`StorageError` with a clear message."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        message = error.get("Message", "")
        if key is not None and code in _NOT_FOUND:
            raise ObjectNotFound(key) from None
        hint = ""
        if code in _BAD_CREDENTIALS:
            hint = " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy)"
        raise StorageError(f"S3 {what} failed: {code} {message}{hint}".rstrip()) from exc
    except BotoCoreError as exc:
        raise StorageError(f"S3 {what} failed: {exc}") from exc


def _check_upload_id(upload_id: str) -> str:
    if (
        not isinstance(upload_id, str)
        or not upload_id
        or len(upload_id) > 1024
        or any(unicodedata.category(c) == "Cc" for c in upload_id)
    ):
        raise InvalidKey(f"not an upload id: {upload_id!r}")
    return upload_id


# Bytes a write gathers outside the part buffers, before it is known to be large.
_FIRST_BUFFER = 64 * 1024


class _S3Writer(ObjectWriter):
    """A streamed write: parts filled in place in buffers of :data:`PROCESS_BUFFERS`.

    The write fills one part buffer of its own; a full part is sent in the I/O pool and
    the next one fills in a spare buffer while the budget lends one (at most
    ``concurrency`` parts in flight), else in one of its own once its part is sent:
    receiving then waits for the store, in this thread (backpressure).
    """

    def __init__(self, storage: S3Storage, key: str, meta: ObjectMeta | None) -> None:
        super().__init__(key, meta)
        self._storage = storage
        self._buffers = storage.part_buffers
        self._size = storage.part_size  # of the part being filled
        # What came before the first part, while it is small (kept as it came if it
        # was one chunk): most objects written in one go are (upload state, leases).
        self._head: bytes | bytearray = b""
        self._part: bytearray | None = None
        self._filled = 0
        self._upload_id: str | None = None
        self._in_flight: dict[Future[PartInfo], bytes | bytearray] = {}
        self._parts: list[PartInfo] = []
        self._next_number = 1

    def _write(self, data: bytes) -> None:
        # Parts are filled in place in a buffer of exactly part_size bytes: no growth
        # by reallocation, no copy when the part is sent.
        part_size = self._size
        if self._part is None and self._upload_id is None:
            head = self._head
            if not head and len(data) < part_size:
                self._head = data
                return
            if len(head) + len(data) <= _FIRST_BUFFER:
                self._head = head if isinstance(head, bytearray) else bytearray(head)
                self._head += data
                return
            self._part = self._buffers.take(part_size)
            self._part[: len(head)] = head
            self._filled = len(head)
            self._head = b""
        view = memoryview(data)
        position = 0
        while position < len(view):
            if self._part is None:
                part_size = self._size
                self._part = self._next_buffer()
                self._filled = 0
            take = min(part_size - self._filled, len(view) - position)
            self._part[self._filled : self._filled + take] = view[position : position + take]
            self._filled += take
            position += take
            if self._filled == part_size:
                full, self._part = self._part, None
                self._send(full)

    def _next_buffer(self) -> bytearray:
        """A buffer for the next part: one of this write's own whose part is sent, or a
        spare one while the budget lends it; else wait for one of ours."""
        size = self._size
        while self._in_flight:  # a part was just sent: one of ours will come back
            done = {future for future in self._in_flight if future.done()}
            if done:
                free = self._collect(done)
                mine = next((b for b in free if isinstance(b, bytearray) and len(b) == size), None)
                for buffer in free:
                    if buffer is not mine:
                        self._buffers.give_back(buffer)
                if mine is not None:
                    return mine
                continue
            if len(self._in_flight) < self._storage.concurrency:
                spare = self._buffers.spare(size)
                if spare is not None:
                    return spare
            wait(self._in_flight, return_when=FIRST_COMPLETED)
        return self._buffers.take(size)

    def _tail(self) -> bytes | bytearray:
        """What is gathered and not sent; the part buffer goes back to the pool."""
        part, self._part = self._part, None
        if part is None:
            head, self._head = self._head, b""
            return head
        with memoryview(part) as view:
            tail = bytes(view[: self._filled])
        self._buffers.give_back(part)
        return tail

    def _send(self, part: bytes | bytearray) -> None:
        storage = self._storage
        if self._upload_id is None:
            self._upload_id = storage._begin_write(self.key, self.meta)
        if self._next_number > MAX_PARTS:
            raise StorageError(f"S3 allows {MAX_PARTS} parts: raise part_size for {self.key!r}")
        while len(self._in_flight) >= storage.concurrency:
            for buffer in self._collect(wait(self._in_flight, return_when=FIRST_COMPLETED).done):
                self._buffers.give_back(buffer)
        # Leaf work in the shared I/O pool.
        future = io_pool().submit(
            storage.upload_part, self.key, self._upload_id, self._next_number, part
        )
        self._next_number += 1
        self._size = storage.part_size_of(self._next_number)
        self._in_flight[future] = part

    def _collect(self, done: set[Future[PartInfo]]) -> list[bytes | bytearray]:
        """Count the parts sent; their buffers, free again (raises a part's error)."""
        free: list[bytes | bytearray] = []
        for future in done:
            free.append(self._in_flight.pop(future))
            self._parts.append(future.result())
        return free

    def _commit(self) -> ObjectInfo:
        storage = self._storage
        sha256 = self.sha256
        tail = self._tail()
        if self._upload_id is None:
            storage._put(self, tail, sha256)
        else:
            if tail:
                self._send(tail)
            del tail
            for buffer in self._collect(wait(self._in_flight).done):
                self._buffers.give_back(buffer)
            storage.complete_multipart(
                self.key, self._upload_id, self._parts, sha256=sha256, describe=False
            )
        return ObjectInfo(
            key=self.key,
            size=self.size,
            created=datetime.now(UTC),
            filename=self.meta.filename,
            content_type=self.meta.content_type,
            sha256=sha256,
            etag=None,
            metadata=dict(self.meta.metadata),
        )

    def _shutdown(self) -> None:
        in_flight, self._in_flight = self._in_flight, {}
        for future in in_flight:
            future.cancel()
        wait(in_flight)
        for buffer in in_flight.values():  # no part reads it any more
            self._buffers.give_back(buffer)

    def _abort(self) -> None:
        part, self._part, self._head = self._part, None, b""
        if part is not None:
            self._buffers.give_back(part)
        self._shutdown()
        if self._upload_id is not None:
            self._storage._abort_or_remember(self.key, self._upload_id)
            self._upload_id = None


class _S3Reader(RangeReader):
    """A seekable stream over ``[start, stop)`` of an object, fetched by ranged GETs."""

    def __init__(
        self, storage: S3Storage, key: str, start: int, stop: int, body: Any | None
    ) -> None:
        super().__init__(stop - start)
        self._storage = storage
        self._key = key
        self._start = start
        self._body = body

    def _read_at(self, pos: int, view: memoryview) -> int:
        if self._body is None:
            first = self._start + pos
            last = self._start + self._length - 1
            self._body = self._storage._get(self._key, f"bytes={first}-{last}")["Body"]
        with _errors(f"reading {self._key!r}", self._key):
            data = self._body.read(len(view))
        if not data:
            msg = f"the object {self._key!r} ended early (changed while reading?)"
            raise StorageError(msg)
        view[: len(data)] = data
        return len(data)

    def _moved(self, old: int, new: int) -> None:
        self._release()  # the next read asks for the range from the new position

    def _release(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None


class S3Storage(ResumableStorage):
    """Objects in an S3 bucket under ``prefix``; see the module docstring.

    Args:
        bucket: the bucket (it must exist).
        prefix: prepended to every key (``"uploads"`` and ``"uploads/"`` are the same).
        part_size: bytes of one multipart part (at least 5 MiB, the S3 minimum); also
            the size under which an object is sent in one request.
        concurrency: parts uploaded at once by one writer.
        client: a boto3 S3 client; by default one made from the environment.

    Memory per writer stays under ``(concurrency + 1) * part_size``, and the parts
    beyond the first of each writer are lent by :attr:`part_buffers` under its budget.
    Instances and their client are safe to share between threads.
    """

    min_part_size = MIN_PART_SIZE

    max_copy_size: int = 5 * 1024 * MiB
    """Largest object moved with one CopyObject (the S3 limit); larger ones go in parts."""

    copy_part_size: int = 512 * MiB
    """Bytes of one UploadPartCopy when an object is moved in parts."""

    writes_prefix = "writes/"
    """Where the leases of owned writes are kept, under the storage's prefix."""

    part_buffers: PartBuffers = PROCESS_BUFFERS
    """Where streamed writes take their part buffers: the process's, shared by all."""

    def part_size_of(self, number: int) -> int:
        """Bytes of part ``number`` of a streamed write (the last one may be shorter).

        ``part_size`` for the first :data:`PARTS_PER_SIZE` parts, then doubled after
        every :data:`PARTS_PER_SIZE` more (at most 5 GiB, the S3 maximum): an object
        of any size S3 takes (5 TiB) fits in its 10,000 parts, and only objects past
        ``PARTS_PER_SIZE * part_size`` (8 GiB by default) hold larger parts in memory.
        """
        return min(self.part_size << ((number - 1) // PARTS_PER_SIZE), MAX_PART_SIZE)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        part_size: int = 8 * MiB,
        concurrency: int = 4,
        client: Any | None = None,
        stale_after: float = 24 * 3600.0,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} (5 MiB), not {part_size}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        prefix = prefix.strip("/")
        self.prefix = f"{validate_key(prefix)}/" if prefix else ""
        self.bucket = bucket
        self.part_size = part_size
        self.concurrency = concurrency
        self.stale_after = stale_after
        # Multipart uploads this process writes, and those whose abort failed.
        self._writing: set[str] = set()
        self._to_abort: dict[str, str] = {}
        self._lock = threading.Lock()
        self._owners: HeldLeases | None = None
        if client is None:
            config = Config(
                max_pool_connections=max(10, 2 * concurrency),
                retries={"mode": "standard", "max_attempts": 3},
            )
            client = boto3.session.Session().client("s3", config=config)
        self.client: Any = client

    def __repr__(self) -> str:
        return f"S3Storage({self.bucket!r}, {self.prefix!r})"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _user_metadata(self, meta: ObjectMeta, sha256: str | None = None) -> dict[str, str]:
        user = {name: encode_metadata_value(value) for name, value in meta.metadata.items()}
        if meta.filename is not None:
            user["filename"] = encode_metadata_value(meta.filename)
        if sha256 is not None:
            user["sha256"] = sha256
        return user

    def _put(self, writer: _S3Writer, data: bytes | bytearray, sha256: str) -> None:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(writer.key),
            "Body": data,
            "Metadata": self._user_metadata(writer.meta, sha256),
        }
        if writer.meta.content_type is not None:
            args["ContentType"] = writer.meta.content_type
        with _errors(f"writing {writer.key!r}"):
            self.client.put_object(**args)

    def _get(self, key: str, range_: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if range_ is not None:
            args["Range"] = range_
        with _errors(f"reading {key!r}", key):
            response: dict[str, Any] = self.client.get_object(**args)
        return response

    # -- the interface -------------------------------------------------------------------

    def open_writer(self, key: str, meta: ObjectMeta | None = None) -> ObjectWriter:
        """Start a streamed write of ``key``; see :class:`ObjectWriter` and the module."""
        return _S3Writer(self, key, meta)

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> BinaryIO:
        """A buffered, seekable stream over the object or a range (GetObject ``Range``)."""
        check_range(start, end)
        if start == 0 and end is None:
            response = self._get(key, None)
            size = int(response["ContentLength"])
            reader = _S3Reader(self, key, 0, size, response["Body"])
        elif end == start:
            self.stat(key)
            reader = _S3Reader(self, key, start, start, None)
        else:
            last = "" if end is None else str(end - 1)
            try:
                response = self._get(key, f"bytes={start}-{last}")
            except StorageError as exc:
                cause = exc.__cause__
                if isinstance(cause, ClientError) and _is_invalid_range(cause):
                    return io.BufferedReader(_S3Reader(self, key, start, start, None))
                raise
            # "bytes 2-4/11": the object's size is after the slash.
            total = int(str(response.get("ContentRange", "")).rpartition("/")[2])
            stop = total if end is None else min(end, total)
            reader = _S3Reader(self, key, start, stop, response["Body"])
        return io.BufferedReader(reader, buffer_size=256 * 1024)

    def stat(self, key: str) -> ObjectInfo:
        """HeadObject (and the ``sha256`` tag of a multipart object)."""
        with _errors(f"describing {key!r}", key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        meta = {name.lower(): value for name, value in head.get("Metadata", {}).items()}
        filename = meta.pop("filename", None)
        sha256 = meta.pop("sha256", None)
        if sha256 is None and head.get("TagCount"):
            with contextlib.suppress(StorageError), _errors(f"reading the tags of {key!r}", key):
                tags = self.client.get_object_tagging(Bucket=self.bucket, Key=self._key(key))
                sha256 = next(
                    (t["Value"] for t in tags.get("TagSet", []) if t.get("Key") == "sha256"), None
                )
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            created=_utc(head["LastModified"]),
            filename=None if filename is None else decode_metadata_value(filename),
            content_type=head.get("ContentType"),
            sha256=sha256,
            etag=head.get("ETag"),
            metadata={name: decode_metadata_value(value) for name, value in meta.items()},
        )

    def list(self, prefix: str = "", *, limit: int = 1000, token: str | None = None) -> ListPage:
        """ListObjectsV2, one page; items carry key, size, created and etag only.

        Keys under the storage's prefix that are not valid keys (written by other
        tools) are left out.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.prefix + prefix,
            "MaxKeys": min(limit, 1000),
        }
        if token is not None:
            args["ContinuationToken"] = token
        with _errors(f"listing {prefix!r}"):
            response = self.client.list_objects_v2(**args)
        items = []
        for entry in response.get("Contents", []):
            key = str(entry["Key"])[len(self.prefix) :]
            try:
                validate_key(key)
            except InvalidKey:
                continue
            items.append(
                ObjectInfo(
                    key=key,
                    size=int(entry["Size"]),
                    created=_utc(entry["LastModified"]),
                    etag=entry.get("ETag"),
                )
            )
        next_token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
        return ListPage(items, next_token)

    def check(self) -> None:
        """HeadBucket: raises :class:`StorageError` (bucket missing, bad credentials, down)."""
        with _errors(f"checking the bucket {self.bucket!r}"):
            self.client.head_bucket(Bucket=self.bucket)

    def delete(self, key: str) -> None:
        """DeleteObject (S3 does not tell whether the object was there)."""
        with _errors(f"deleting {key!r}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    # -- moving ----------------------------------------------------------------------------

    def move(
        self, src: str, dest: str, *, meta: ObjectMeta | None = None, sha256: str | None = None
    ) -> ObjectInfo:
        """A server-side copy with the new metadata, then DeleteObject of ``src``.

        Up to :attr:`max_copy_size` bytes (5 GiB, the S3 limit) this is one CopyObject;
        a larger object is copied by UploadPartCopy in parts of :attr:`copy_part_size`
        (a multipart upload aborted on failure). The bytes never pass through this
        process. A move onto itself that only adds the digest of an object without one
        is a PutObjectTagging (the copy is the fallback on an endpoint without
        tagging). See :meth:`Storage.move`.
        """
        validate_key(dest)
        old = self.stat(src)
        checked = (old.meta if meta is None else meta).checked()
        if (
            src == dest
            and sha256 is not None
            and old.sha256 is None
            and checked == old.meta.checked()
            and self._tag(dest, sha256)
        ):
            # Only the digest is new (a tus upload hashed after it was completed in
            # place): a tag records it without copying every byte onto themselves.
            return dataclasses.replace(old, sha256=sha256)
        content_type = checked.content_type
        user = self._user_metadata(checked, sha256 or old.sha256)
        if old.size <= self.max_copy_size:
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": self._key(dest),
                "CopySource": {"Bucket": self.bucket, "Key": self._key(src)},
                "MetadataDirective": "REPLACE",
                "Metadata": user,
            }
            if content_type is not None:
                args["ContentType"] = content_type
            with _errors(f"copying {src!r} to {dest!r}", src):
                self.client.copy_object(**args)
        else:
            self._copy_in_parts(src, dest, old.size, content_type=content_type, user=user)
        if src != dest:
            self.delete(src)
        return self.stat(dest)

    def _copy_in_parts(
        self, src: str, dest: str, size: int, *, content_type: str | None, user: dict[str, str]
    ) -> None:
        part = max(self.copy_part_size, -(-size // MAX_PARTS))
        upload_id = self._begin(dest, content_type, user)
        source = {"Bucket": self.bucket, "Key": self._key(src)}

        def copy(number: int) -> PartInfo:
            first = (number - 1) * part
            last = min(size, first + part) - 1
            with _errors(f"copying part {number} of {src!r}", src):
                response = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=self._key(dest),
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={first}-{last}",
                )
            etag = str(response["CopyPartResult"]["ETag"])
            return PartInfo(number, last - first + 1, etag)

        try:
            parts = list(io_pool().map(copy, range(1, -(-size // part) + 1)))
            self.complete_multipart(dest, upload_id, parts, describe=False)
        except BaseException:
            self._abort_or_remember(dest, upload_id)
            raise

    def _begin(
        self,
        key: str,
        content_type: str | None,
        user_metadata: dict[str, str],
        *,
        owned: bool = True,
    ) -> str:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "Metadata": user_metadata,
        }
        if content_type is not None:
            args["ContentType"] = content_type
        with _errors(f"starting an upload of {key!r}"):
            response = self.client.create_multipart_upload(**args)
        upload_id = str(response["UploadId"])
        with self._lock:
            self._writing.add(upload_id)
        if owned:
            self._own(upload_id)
        return upload_id

    # -- owned writes ------------------------------------------------------------------

    def own_writes(self, ttl: float = 30.0) -> None:
        """Lease each streamed write's multipart upload for ``ttl`` seconds, renewed.

        So that :meth:`cleanup`, in this process or any other on the bucket, aborts
        the upload of a write whose process died as soon as its lease runs out (see the
        module docstring). Needs a store with conditional writes (``If-None-Match``,
        ``If-Match``); without them, writes are not leased (a warning says so) and only
        their age tells orphans.
        """

        def key_of(name: str) -> str:
            return f"{self.prefix}{self.writes_prefix}{name}/lock"

        self._owners = HeldLeases(ObjectLock(_S3Cells(self.client, self.bucket, key_of), ttl))

    def _own(self, upload_id: str) -> None:
        owners = self._owners
        if owners is None:
            return
        try:
            owners.take(_lease_name(upload_id))
        except ConditionalWritesUnsupported as exc:
            logger.warning("writes are not leased: %s", exc)
            self._owners = None
        except StorageError as exc:
            # The write goes on; only its age tells an orphan from it.
            logger.warning("leasing the upload %s failed: %s", upload_id, exc)

    def _disown(self, upload_id: str) -> None:
        owners = self._owners
        if owners is not None:
            owners.drop(_lease_name(upload_id))

    def _abort_or_remember(self, key: str, upload_id: str) -> None:
        """Abort, retrying a little; if the store still refuses, leave it to :meth:`cleanup`."""
        for pause in (*_ABORT_PAUSES, None):
            try:
                self.abort_multipart(key, upload_id)
            except StorageError as exc:
                if pause is None:
                    logger.warning(
                        "aborting the upload of %r failed (%s); the next cleanup retries", key, exc
                    )
                    with self._lock:
                        self._to_abort[upload_id] = key
                    return
                time.sleep(pause)
            else:
                return

    def cleanup(self, older_than: float | None = None, *, keep: Container[str] = ()) -> int:
        """Abort orphaned multipart uploads under the prefix; return how many were aborted.

        Aborts those whose abort failed earlier, and every incomplete upload that this
        process is not writing and whose upload id is not in ``keep`` (the live
        resumable uploads) if its write lease ran out (its writer died, see
        :meth:`own_writes`), or, without a lease, if it was started more than
        ``older_than`` seconds ago (``stale_after`` by default). Leases left by writers
        that died after their upload ended are removed too (and counted). Each abort
        is logged. Raises :class:`StorageError` when the store cannot be listed.
        """
        age = self.stale_after if older_than is None else older_than
        limit = datetime.now(UTC).timestamp() - age
        with self._lock:
            doomed = dict(self._to_abort)
            writing = set(self._writing)
        owners = self._owners
        taken: dict[str, Lease] = {}
        listed: set[str] = set()
        pages = self.client.get_paginator("list_multipart_uploads")
        with _errors("listing incomplete uploads"):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", ()):
                    upload_id, name = str(upload["UploadId"]), str(upload["Key"])
                    listed.add(_lease_name(upload_id))
                    if upload_id in writing or upload_id in keep:
                        continue
                    leased, lease = False, None
                    if owners is not None and not name.startswith(self._writes_key()):
                        leased, lease = self._take_lapsed(owners, _lease_name(upload_id))
                    if lease is not None:
                        taken[upload_id] = lease
                    old = _utc(upload["Initiated"]).timestamp() <= limit
                    if lease is not None or (old and not leased):
                        doomed[upload_id] = name.removeprefix(self.prefix)
        aborted = 0
        for upload_id, key in doomed.items():
            try:
                self.abort_multipart(key, upload_id)
            except (StorageError, InvalidKey) as exc:
                logger.warning("aborting the orphaned upload of %r failed: %s", key, exc)
                continue
            logger.info("aborted the orphaned multipart upload %s of %r", upload_id, key)
            with self._lock:
                self._to_abort.pop(upload_id, None)
            if owners is not None and upload_id in taken:
                with contextlib.suppress(StorageError):
                    owners.lock.release(taken[upload_id])
            aborted += 1
        if owners is not None:
            aborted += self._sweep_stray_leases(owners, listed)
        return aborted

    def _writes_key(self) -> str:
        return self.prefix + self.writes_prefix

    @staticmethod
    def _take_lapsed(owners: HeldLeases, name: str) -> tuple[bool, Lease | None]:
        lock = owners.lock
        assert isinstance(lock, ObjectLock)
        try:
            return lock.take_lapsed(name, owners.owner)
        except StorageError as exc:
            logger.warning("reading the lease %s failed: %s", name, exc)
            return True, None  # unknown: leave it to the next sweep

    def _sweep_stray_leases(self, owners: HeldLeases, listed: set[str]) -> int:
        """Remove the lapsed leases of uploads that ended (their writer died before dropping)."""
        removed = 0
        pages = self.client.get_paginator("list_objects_v2")
        with _errors("listing write leases"):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self._writes_key()):
                for entry in page.get("Contents", ()):
                    name = str(entry["Key"]).removeprefix(self._writes_key()).removesuffix("/lock")
                    if name in listed or owners.holds(name):
                        continue
                    _, lease = self._take_lapsed(owners, name)
                    if lease is not None:
                        with contextlib.suppress(StorageError):
                            owners.lock.release(lease)
                        removed += 1
        return removed

    # -- resumable (multipart) uploads -------------------------------------------------------

    def begin_multipart(self, key: str, meta: ObjectMeta | None = None) -> str:
        """CreateMultipartUpload with the object's metadata; returns the upload id."""
        # Not leased: a resumable upload lives across requests; its owner (the tus
        # state) names it live to cleanup.
        return self._begin_write(key, meta, owned=False)

    def _begin_write(self, key: str, meta: ObjectMeta | None, *, owned: bool = True) -> str:
        checked = ObjectMeta() if meta is None else meta.checked()
        return self._begin(key, checked.content_type, self._user_metadata(checked), owned=owned)

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> PartInfo:
        """UploadPart: parts 1 to 10,000; all but the last at least 5 MiB."""
        if not 1 <= number <= MAX_PARTS:
            raise ValueError(f"part numbers go from 1 to {MAX_PARTS}, not {number}")
        with _errors(f"uploading part {number} of {key!r}"):
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=_check_upload_id(upload_id),
                PartNumber=number,
                Body=data,
            )
        return PartInfo(number, len(data), str(response["ETag"]))

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """ListParts, every page; :class:`ObjectNotFound` for an unknown upload."""
        latest: dict[int, tuple[datetime, PartInfo]] = {}
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "UploadId": _check_upload_id(upload_id),
        }
        while True:
            try:
                with _errors(f"listing the parts of {key!r}"):
                    response = self.client.list_parts(**args)
            except StorageError as exc:
                if _code(exc) in {"NoSuchUpload", "404"}:
                    raise ObjectNotFound(f"{key} (upload {upload_id})") from None
                raise
            for entry in response.get("Parts", []):
                part = PartInfo(int(entry["PartNumber"]), int(entry["Size"]), str(entry["ETag"]))
                # A part sent twice is listed twice by some servers (SeaweedFS): the
                # later upload is the one that counts.
                if part.number not in latest or entry["LastModified"] >= latest[part.number][0]:
                    latest[part.number] = (entry["LastModified"], part)
            if not response.get("IsTruncated"):
                return [latest[number][1] for number in sorted(latest)]
            args["PartNumberMarker"] = response["NextPartNumberMarker"]

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[PartInfo] | None = None,
        *,
        sha256: str | None = None,
        describe: bool = True,
    ) -> ObjectInfo:
        """CompleteMultipartUpload, then the ``sha256`` tag when given.

        With ``describe=False`` the returned info is not fetched back (it then holds
        the key and size only).
        """
        if parts is None:
            parts = self.list_parts(key, upload_id)
        ordered = sorted(parts, key=lambda part: part.number)
        with _errors(f"completing the upload of {key!r}"):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=_check_upload_id(upload_id),
                MultipartUpload={
                    "Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in ordered]
                },
            )
        with self._lock:
            self._writing.discard(upload_id)
        self._disown(upload_id)
        if sha256 is not None:
            # Best effort: an endpoint without tagging keeps the object, without the tag.
            self._tag(key, sha256)
        if describe:
            return self.stat(key)
        return ObjectInfo(
            key=key, size=sum(p.size for p in ordered), created=datetime.now(UTC), sha256=sha256
        )

    def _tag(self, key: str, sha256: str) -> bool:
        """PutObjectTagging of the ``sha256`` tag; False if the endpoint refused it."""
        try:
            with _errors(f"tagging {key!r}", key):
                self.client.put_object_tagging(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Tagging={"TagSet": [{"Key": "sha256", "Value": sha256}]},
                )
        except StorageError:
            return False
        return True

    _if_match = True  # whether the store takes If-Match on PutObject (see write_if)

    def read_tagged(self, key: str) -> tuple[bytes, str | None]:
        """GetObject: the bytes and the ETag."""
        response = self._get(key, None)
        with _errors(f"reading {key!r}", key):
            body: bytes = response["Body"].read()
        return body, str(response["ETag"])

    def write_if(
        self, key: str, data: bytes, *, tag: str | None, durable: bool = True
    ) -> str | None:
        """PutObject with ``If-Match: <tag>`` (a missing object is a conflict too).

        A store that refuses the header (501) is written to unconditionally from then
        on (a warning says so), as a store that ignores it is.
        """
        validate_key(key)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if tag is not None and self._if_match:
            args["IfMatch"] = tag
        try:
            with _errors(f"writing {key!r}"):
                put = self.client.put_object(**args)
        except StorageError as exc:
            if "IfMatch" in args and _code(exc) in _CONFLICT:
                msg = f"{key!r} changed since it was read"
                raise WriteConflict(msg) from None
            if "IfMatch" in args and _code(exc) in {"501", "NotImplemented"}:
                logger.warning(
                    "the object store refuses conditional writes (If-Match): a tus server "
                    "that froze mid-save may undo another's work after a takeover"
                )
                self._if_match = False
                return self.write_if(key, data, tag=None, durable=durable)
            raise
        return str(put["ETag"])

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; an unknown or finished upload is not an error."""
        with self._lock:
            self._writing.discard(upload_id)
        self._disown(upload_id)
        try:
            with _errors(f"aborting the upload of {key!r}"):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(key), UploadId=_check_upload_id(upload_id)
                )
        except StorageError as exc:
            if _code(exc) not in {"NoSuchUpload", "404"}:
                raise


def _lease_name(upload_id: str) -> str:
    """The name of an upload's write lease: upload ids are long and hold any character."""
    return hashlib.blake2b(upload_id.encode(), digest_size=16).hexdigest()


def _code(exc: StorageError) -> str:
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def _is_invalid_range(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"InvalidRange", "416"} or status == 416


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
