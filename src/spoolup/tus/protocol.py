"""The tus 1.0.0 resumable-upload protocol with no I/O: request headers in, decisions out.

:meth:`TusProtocol.read_request` turns a request's method, upload id and headers into
one small event (:class:`Options`, :class:`Create`, :class:`Head`, :class:`Patch`,
:class:`Delete`) after checking every header the protocol defines, or raises a
:class:`TusError` carrying the status to answer with. The other methods build the
:class:`Response` for a request once the caller has done its storage work, and check a
``PATCH`` against the upload's state. Nothing here reads a socket, a file or a clock:
the caller passes ``now`` in.

Extensions: creation, creation-with-upload, creation-defer-length, termination,
checksum (md5, sha1, sha256, sha512), expiration and concatenation. Every number a
client sends is bounded (:class:`TusLimits`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Literal

from spoolup.errors import RequestTooLarge, UnsupportedMediaType, UploadError

if TYPE_CHECKING:
    from spoolup.tus.state import UploadInfo

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "EXTENSIONS",
    "OFFSET_CONTENT_TYPE",
    "TUS_VERSION",
    "Checksum",
    "ChecksumMismatch",
    "Create",
    "Delete",
    "Head",
    "Options",
    "Patch",
    "Response",
    "TusError",
    "TusLimits",
    "TusProtocol",
    "TusRequest",
    "UploadGone",
    "UploadLocked",
    "UploadNotFound",
    "headers_from_asgi",
    "is_upload_id",
    "parse_metadata",
]

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
    "concatenation",
)
CHECKSUM_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")

_METHODS = frozenset({"OPTIONS", "POST", "HEAD", "PATCH", "DELETE"})
# Upload ids are made by the server (secrets.token_urlsafe): anything else is not ours.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_METADATA_KEY = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
# 20 digits hold any 64-bit count; more is never a real size and would only cost time.
_MAX_DIGITS = 20
_TUS_HEADERS = (
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Concat",
    "Upload-Expires",
    "Upload-Checksum",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Max-Size",
    "Tus-Extension",
    "Tus-Checksum-Algorithm",
    "Location",
    "Spoolup-File-Id",
    "Spoolup-File-Record",
)
_ALLOW_HEADERS = (
    "Authorization, Content-Type, Origin, X-Requested-With, X-Request-ID, "
    "X-HTTP-Method-Override, "
    + ", ".join(h for h in _TUS_HEADERS if h.startswith("U"))
    + ", Tus-Resumable"
)


class TusError(UploadError):
    """A tus request that cannot be served; ``status`` is the answer, 400 by default."""

    status = 400


class UploadNotFound(TusError):
    """No upload has this id (404)."""

    status = 404


class UploadGone(TusError):
    """The upload expired or was terminated (410)."""

    status = 410


class UploadLocked(TusError):
    """Another request is writing this upload right now (423)."""

    status = 423


class ChecksumMismatch(TusError):
    """The chunk's digest differs from ``Upload-Checksum``; the chunk is discarded (460)."""

    status = 460


@dataclass(frozen=True, slots=True, kw_only=True)
class TusLimits:
    """Bounds on what a tus client controls.

    Attributes:
        max_size: bytes in one upload, announced as ``Tus-Max-Size`` (10 GiB).
        max_metadata_size: bytes of the ``Upload-Metadata`` header (16 KiB).
        max_metadata_pairs: key-value pairs in ``Upload-Metadata`` (64).
        max_concat_parts: partial uploads named by one final ``Upload-Concat`` (1,000).
        max_header_size: bytes of any other tus header value (8 KiB).
    """

    max_size: int = 10 * 1024**3
    max_metadata_size: int = 16 * 1024
    max_metadata_pairs: int = 64
    max_concat_parts: int = 1000
    max_header_size: int = 8 * 1024

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                msg = f"TusLimits.{name} must be a non-negative int, not {value!r}"
                raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Checksum:
    """An ``Upload-Checksum``: the algorithm and the digest the chunk must have."""

    algorithm: str
    digest: bytes

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object for this algorithm, to feed the chunk through."""
        return hashlib.new(self.algorithm)

    def verify(self, hasher: hashlib._Hash) -> None:
        """Raise :class:`ChecksumMismatch` unless ``hasher`` holds this digest."""
        if hasher.digest() != self.digest:
            msg = f"the chunk does not match its {self.algorithm} Upload-Checksum"
            raise ChecksumMismatch(msg)


@dataclass(frozen=True, slots=True)
class Response:
    """A response to send: status, headers (name, value) and a body (small, or empty)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


@dataclass(frozen=True, slots=True)
class TusRequest:
    """Base of the events :meth:`TusProtocol.read_request` returns."""


@dataclass(frozen=True, slots=True)
class Options(TusRequest):
    """``OPTIONS``: the server's capabilities, or a browser's CORS preflight."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Create(TusRequest):
    """``POST`` to the collection: create an upload, with its first bytes when ``body_length``.

    ``length`` is ``None`` when deferred (and for a final concatenation, whose length is
    the sum of its parts). ``metadata`` holds the ``Upload-Metadata`` pairs with their
    values still base64-encoded, as they are echoed back on ``HEAD``. ``body_length`` is
    the declared length of a creation-with-upload body, ``-1`` when it is sent chunked,
    ``None`` when there is no body. ``parts`` holds a final concatenation's URLs as
    sent (:meth:`TusProtocol.concat_ids` checks them and gives their ids).
    """

    length: int | None
    metadata: tuple[tuple[str, str], ...] = ()
    concat: Literal["partial", "final"] | None = None
    parts: tuple[str, ...] = ()
    body_length: int | None = None
    checksum: Checksum | None = None


@dataclass(frozen=True, slots=True)
class Head(TusRequest):
    """``HEAD`` on an upload: where it stands."""

    upload_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Patch(TusRequest):
    """``PATCH`` on an upload: append a chunk at ``offset``.

    ``length`` sets a deferred length; ``body_length`` is the declared
    ``Content-Length`` or ``None`` when the body is sent chunked.
    """

    upload_id: str
    offset: int
    length: int | None = None
    body_length: int | None = None
    checksum: Checksum | None = None


@dataclass(frozen=True, slots=True)
class Delete(TusRequest):
    """``DELETE`` on an upload (termination)."""

    upload_id: str


def is_upload_id(value: str) -> bool:
    """Whether ``value`` has the shape of an upload id this server makes."""
    return _UPLOAD_ID.fullmatch(value) is not None


def headers_from_asgi(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs into a dict of lowercased names; repeated values are comma-joined."""
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def _parse_count(value: str, name: str) -> int:
    text = value.strip()
    if not text or len(text) > _MAX_DIGITS or not (text.isascii() and text.isdigit()):
        msg = f"{name} must be a non-negative integer, not {value[:40]!r}"
        raise TusError(msg)
    return int(text)


def parse_metadata(value: str, limits: TusLimits) -> tuple[tuple[str, str], ...]:
    """Check an ``Upload-Metadata`` value and split it into (key, base64 value) pairs.

    A key may come without a value (then the value is ``""``). Keys are unique; values
    must be valid base64. Raises :class:`TusError` (400), or :class:`RequestTooLarge`
    (413) past ``max_metadata_size`` or ``max_metadata_pairs``.
    """
    if len(value) > limits.max_metadata_size:
        raise RequestTooLarge.for_limit(
            "max_metadata_size", limits.max_metadata_size, "Upload-Metadata"
        )
    if not value.strip():
        return ()
    items = value.split(",")
    if len(items) > limits.max_metadata_pairs:
        raise RequestTooLarge.for_limit(
            "max_metadata_pairs", limits.max_metadata_pairs, "Upload-Metadata"
        )
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in items:
        parts = item.strip().split(" ")
        if len(parts) > 2 or not _METADATA_KEY.fullmatch(parts[0]):
            msg = f"Upload-Metadata has a malformed pair {item.strip()[:40]!r}"
            raise TusError(msg)
        key = parts[0]
        encoded = parts[1] if len(parts) == 2 else ""
        if key in seen:
            msg = f"Upload-Metadata has the key {key!r} twice"
            raise TusError(msg)
        try:
            base64.b64decode(encoded, validate=True)
        except binascii.Error:
            msg = f"Upload-Metadata value of {key!r} is not base64"
            raise TusError(msg) from None
        seen.add(key)
        pairs.append((key, encoded))
    return tuple(pairs)


def _parse_checksum(value: str, algorithms: tuple[str, ...]) -> Checksum:
    parts = value.strip().split(" ")
    if len(parts) != 2:
        msg = "Upload-Checksum must be '<algorithm> <base64 digest>'"
        raise TusError(msg)
    algorithm = parts[0].lower()
    if algorithm not in algorithms:
        msg = f"Upload-Checksum algorithm {parts[0][:20]!r} is not one of {', '.join(algorithms)}"
        raise TusError(msg)
    try:
        digest = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        msg = "Upload-Checksum digest is not base64"
        raise TusError(msg) from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        msg = f"Upload-Checksum digest has the wrong size for {algorithm}"
        raise TusError(msg)
    return Checksum(algorithm, digest)


def _upload_id_from_url(url: str) -> str:
    # Clients send the upload URL, absolute or a path; the id is its last segment.
    path = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    upload_id = path.rsplit("/", 1)[-1]
    if not is_upload_id(upload_id):
        msg = f"Upload-Concat names {url[:80]!r}, which is not an upload of this server"
        raise TusError(msg)
    return upload_id


def _own_upload_path(url: str, collection: str, host: str | None) -> bool:
    """Whether ``url`` is ``<collection>/<id>``, as a path or on this ``host``."""
    path = url
    scheme, sep, rest = url.partition("://")
    if sep:
        if scheme.lower() not in ("http", "https") or host is None:
            return False
        authority, slash, tail = rest.partition("/")
        if authority.lower() != host.strip().lower() or not slash:
            return False
        path = "/" + tail
    path = path.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    head, _, upload_id = path.rpartition("/")
    return head == collection.rstrip("/") and is_upload_id(upload_id)


def http_date(timestamp: float) -> str:
    """``timestamp`` (seconds since the epoch) as an HTTP date, as ``Upload-Expires`` needs."""
    return formatdate(timestamp, usegmt=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class TusProtocol:
    """The server side of tus 1.0.0, with no I/O.

    Attributes:
        limits: bounds on client-controlled numbers; ``limits.max_size`` is ``Tus-Max-Size``.
        checksum_algorithms: the ``Upload-Checksum`` algorithms accepted.
        allow_origins: origins allowed by CORS (none by default); ``("*",)`` allows any.
        expiry: seconds an unfinished upload is kept after its last write, or ``None``.
    """

    limits: TusLimits = field(default_factory=TusLimits)
    checksum_algorithms: tuple[str, ...] = CHECKSUM_ALGORITHMS
    allow_origins: tuple[str, ...] = ()
    expiry: float | None = 24 * 3600.0

    # -- requests -----------------------------------------------------------------

    def read_request(
        self, method: str, upload_id: str | None, headers: Mapping[str, str]
    ) -> TusRequest:
        """Check one request and say what it asks for.

        ``upload_id`` is the path segment after the collection (``None`` for the
        collection itself); ``headers`` has lowercased names. Raises :class:`TusError`
        (or another :class:`UploadError`) with the status to answer with; never
        anything else for what a client sent.
        """
        for name, value in headers.items():
            if name.startswith(("upload-", "tus-")) and (
                len(value) > self.limits.max_header_size and name != "upload-metadata"
            ):
                raise RequestTooLarge.for_limit(
                    "max_header_size", self.limits.max_header_size, f"header {name}"
                )
        method = method.upper()
        override = headers.get("x-http-method-override")
        if override is not None:
            method = override.strip().upper()
        if method not in _METHODS:
            msg = f"method {method[:20]!r} is not allowed here"
            raise TusError(msg, status=405)
        if method == "OPTIONS":
            return Options()
        version = headers.get("tus-resumable")
        if version is None or version.strip() != TUS_VERSION:
            msg = f"Tus-Resumable must be {TUS_VERSION}"
            raise TusError(msg, status=412)
        if method == "POST":
            if upload_id is not None:
                msg = "POST creates uploads at the collection, not on an upload"
                raise TusError(msg, status=405)
            return self._read_create(headers)
        if upload_id is None:
            msg = f"{method} needs an upload URL"
            raise TusError(msg, status=405)
        if not is_upload_id(upload_id):
            msg = "no such upload"
            raise UploadNotFound(msg)
        if method == "HEAD":
            return Head(upload_id)
        if method == "DELETE":
            return Delete(upload_id)
        return self._read_patch(upload_id, headers)

    def _checksum(self, headers: Mapping[str, str]) -> Checksum | None:
        value = headers.get("upload-checksum")
        return None if value is None else _parse_checksum(value, self.checksum_algorithms)

    def _body_length(self, headers: Mapping[str, str]) -> int | None:
        value = headers.get("content-length")
        if value is not None:
            return _parse_count(value, "Content-Length")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return -1
        return 0

    def _read_create(self, headers: Mapping[str, str]) -> Create:
        max_size = self.limits.max_size
        metadata = parse_metadata(headers.get("upload-metadata", ""), self.limits)
        concat_value = headers.get("upload-concat")
        concat: Literal["partial", "final"] | None = None
        parts: tuple[str, ...] = ()
        if concat_value is not None:
            concat_value = concat_value.strip()
            if concat_value == "partial":
                concat = "partial"
            elif concat_value.startswith("final;"):
                concat = "final"
                urls = concat_value[len("final;") :].split()
                if not urls:
                    msg = "Upload-Concat: final names no partial upload"
                    raise TusError(msg)
                if len(urls) > self.limits.max_concat_parts:
                    raise RequestTooLarge.for_limit(
                        "max_concat_parts", self.limits.max_concat_parts, "Upload-Concat"
                    )
                parts = tuple(urls)
                ids = [_upload_id_from_url(u) for u in urls]
                if len(set(ids)) != len(ids):
                    msg = "Upload-Concat names a partial upload more than once"
                    raise TusError(msg)
            else:
                msg = "Upload-Concat must be 'partial' or 'final;<urls>'"
                raise TusError(msg)
        length: int | None = None
        raw_length = headers.get("upload-length")
        defer = headers.get("upload-defer-length")
        if raw_length is not None and defer is not None:
            msg = "Upload-Length and Upload-Defer-Length cannot both be sent"
            raise TusError(msg)
        if raw_length is not None:
            if concat == "final":
                msg = "a final upload takes its length from its parts: no Upload-Length"
                raise TusError(msg)
            length = _parse_count(raw_length, "Upload-Length")
            if length > max_size:
                raise RequestTooLarge.for_limit("max_size", max_size, "Upload-Length")
        elif defer is not None:
            if defer.strip() != "1":
                msg = "Upload-Defer-Length must be 1"
                raise TusError(msg)
            if concat == "final":
                msg = "a final upload cannot defer its length"
                raise TusError(msg)
        elif concat != "final":
            msg = "POST needs Upload-Length or Upload-Defer-Length: 1"
            raise TusError(msg)
        body_length = self._body_length(headers)
        checksum = self._checksum(headers)
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if body_length == 0 and content_type != OFFSET_CONTENT_TYPE:
            body_length = None
        elif content_type != OFFSET_CONTENT_TYPE:
            msg = f"a creation body must be {OFFSET_CONTENT_TYPE}"
            raise UnsupportedMediaType(msg)
        elif concat == "final":
            msg = "a final upload takes no body"
            raise TusError(msg, status=403)
        elif body_length is not None and length is not None and body_length > length:
            raise RequestTooLarge.for_limit("Upload-Length", length, "request body")
        elif body_length is not None and body_length > max_size:
            raise RequestTooLarge.for_limit("max_size", max_size, "request body")
        return Create(
            length=length,
            metadata=metadata,
            concat=concat,
            parts=parts,
            body_length=body_length,
            checksum=checksum,
        )

    def _read_patch(self, upload_id: str, headers: Mapping[str, str]) -> Patch:
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != OFFSET_CONTENT_TYPE:
            msg = f"PATCH needs Content-Type: {OFFSET_CONTENT_TYPE}"
            raise UnsupportedMediaType(msg)
        raw_offset = headers.get("upload-offset")
        if raw_offset is None:
            msg = "PATCH needs Upload-Offset"
            raise TusError(msg)
        offset = _parse_count(raw_offset, "Upload-Offset")
        length: int | None = None
        raw_length = headers.get("upload-length")
        if raw_length is not None:
            length = _parse_count(raw_length, "Upload-Length")
            if length > self.limits.max_size:
                raise RequestTooLarge.for_limit("max_size", self.limits.max_size, "Upload-Length")
        body_length = self._body_length(headers)
        return Patch(
            upload_id=upload_id,
            offset=offset,
            length=length,
            body_length=None if body_length == -1 else body_length,
            checksum=self._checksum(headers),
        )

    # -- checks against the upload's state ----------------------------------------

    def check_alive(self, info: UploadInfo, now: float) -> None:
        """Raise :class:`UploadGone` (410) if the unfinished upload has expired."""
        if info.expires is not None and not info.is_complete and now >= info.expires:
            msg = "the upload expired"
            raise UploadGone(msg)

    def check_patch(self, info: UploadInfo, request: Patch, now: float) -> int | None:
        """Check a ``PATCH`` against the upload; return the length it sets, if any.

        Raises 410 (expired), 403 (a final concatenation), 409 (offset mismatch),
        400 (a length that contradicts the upload) or 413 (the body would pass the
        upload's length or ``max_size``).
        """
        self.check_alive(info, now)
        if info.concat == "final":
            msg = "a final concatenated upload cannot be patched"
            raise TusError(msg, status=403)
        if request.offset != info.offset:
            msg = f"Upload-Offset is {request.offset} but the upload is at {info.offset}"
            raise TusError(msg, status=409)
        length = info.length
        new_length: int | None = None
        if request.length is not None:
            if length is not None and request.length != length:
                msg = "Upload-Length cannot change once it is set"
                raise TusError(msg)
            if request.length < info.offset:
                msg = "Upload-Length is below what was already received"
                raise TusError(msg)
            if length is None:
                new_length = request.length
            length = request.length
        limit = self.limits.max_size if length is None else length
        if request.body_length is not None and info.offset + request.body_length > limit:
            name = "max_size" if length is None else "Upload-Length"
            raise RequestTooLarge.for_limit(name, limit, "Upload-Offset + Content-Length")
        return new_length

    def concat_ids(self, urls: Iterable[str], collection: str, host: str | None) -> tuple[str, ...]:
        """The upload ids of a final ``Upload-Concat``'s URLs, each checked.

        A URL must name an upload of this collection: the path ``<collection>/<id>``,
        or that path on this server's ``host`` (the request's ``Host``); anything else
        (another host, another path ending in an id) is refused (400).
        """
        ids = []
        for url in urls:
            if not _own_upload_path(url, collection, host):
                msg = f"Upload-Concat names {url[:80]!r}, which is not an upload of this server"
                raise TusError(msg)
            ids.append(_upload_id_from_url(url))
        return tuple(ids)

    def room(self, info: UploadInfo) -> int:
        """Bytes the upload can still take: to its length, or to ``max_size`` if deferred."""
        limit = self.limits.max_size if info.length is None else info.length
        return max(0, limit - info.offset)

    def check_final_parts(self, parts: Iterable[UploadInfo], now: float) -> int:
        """Check the partial uploads of a final concatenation; return its total length.

        Raises 400 if one is not a finished partial upload, 410 if one has expired,
        413 if together they pass ``max_size``.
        """
        total = 0
        for part in parts:
            self.check_alive(part, now)
            if part.concat != "partial":
                msg = f"upload {part.id} is not a partial upload"
                raise TusError(msg)
            if not part.is_complete or part.length is None:
                msg = f"partial upload {part.id} is not finished"
                raise TusError(msg)
            total += part.length
        if total > self.limits.max_size:
            raise RequestTooLarge.for_limit("max_size", self.limits.max_size, "final upload")
        return total

    def expires_at(self, now: float) -> float | None:
        """When an upload last written at ``now`` expires, or ``None``."""
        return None if self.expiry is None else now + self.expiry

    # -- responses ----------------------------------------------------------------

    def _base(self) -> list[tuple[str, str]]:
        return [("Tus-Resumable", TUS_VERSION), ("Cache-Control", "no-store")]

    def _expires(self, info: UploadInfo) -> list[tuple[str, str]]:
        if info.expires is None or info.is_complete:
            return []
        return [("Upload-Expires", http_date(info.expires))]

    def options_response(self) -> Response:
        """``204`` with the server's version, extensions, size limit and checksums."""
        headers = [
            ("Tus-Resumable", TUS_VERSION),
            ("Tus-Version", TUS_VERSION),
            ("Tus-Extension", ",".join(EXTENSIONS)),
            ("Tus-Max-Size", str(self.limits.max_size)),
            ("Tus-Checksum-Algorithm", ",".join(self.checksum_algorithms)),
        ]
        return Response(204, tuple(headers))

    def created_response(self, info: UploadInfo, location: str, *, with_body: bool) -> Response:
        """``201`` with ``Location``; with ``Upload-Offset`` after creation-with-upload."""
        headers = [*self._base(), ("Location", location), *self._expires(info)]
        if with_body:
            headers.append(("Upload-Offset", str(info.offset)))
        return Response(201, tuple(headers))

    def head_response(self, info: UploadInfo) -> Response:
        """``200`` with the offset, the length (or that it is deferred) and the metadata."""
        headers = self._base()
        # A final concatenation has an offset only once it exists as a whole.
        if info.concat != "final" or info.is_complete:
            headers.append(("Upload-Offset", str(info.offset)))
        if info.length is None:
            headers.append(("Upload-Defer-Length", "1"))
        else:
            headers.append(("Upload-Length", str(info.length)))
        if info.metadata:
            text = ",".join(f"{k} {v}" if v else k for k, v in info.metadata)
            headers.append(("Upload-Metadata", text))
        if info.concat == "partial":
            headers.append(("Upload-Concat", "partial"))
        elif info.concat == "final":
            headers.append(("Upload-Concat", "final;" + " ".join(info.part_urls)))
        headers.extend(self._expires(info))
        return Response(200, tuple(headers))

    def patched_response(self, info: UploadInfo) -> Response:
        """``204`` with the new ``Upload-Offset`` (and ``Upload-Expires``)."""
        headers = [*self._base(), ("Upload-Offset", str(info.offset)), *self._expires(info)]
        return Response(204, tuple(headers))

    def deleted_response(self) -> Response:
        """``204`` after termination."""
        return Response(204, tuple(self._base()))

    def error_response(self, error: UploadError, *, head: bool = False) -> Response:
        """The response for ``error``: its status, tus headers and a JSON body (none for HEAD)."""
        headers = self._base()
        if error.status == 412:
            headers.append(("Tus-Version", TUS_VERSION))
        if error.status == 405:
            headers.append(("Allow", ", ".join(sorted(_METHODS))))
        body = b""
        if not head:
            body = _json_error(error.message)
            headers.append(("Content-Type", "application/json"))
        return Response(error.status, tuple(headers), body)

    def cors_headers(self, origin: str | None, *, preflight: bool) -> tuple[tuple[str, str], ...]:
        """CORS headers for a request from ``origin`` (none when it is not allowed)."""
        if origin is None:
            return ()
        if "*" in self.allow_origins:
            allowed = "*"
        elif origin in self.allow_origins:
            allowed = origin
        else:
            return ()
        headers = [("Access-Control-Allow-Origin", allowed)]
        if allowed != "*":
            headers.append(("Vary", "Origin"))
        if preflight:
            headers += [
                ("Access-Control-Allow-Methods", ", ".join(sorted(_METHODS))),
                ("Access-Control-Allow-Headers", _ALLOW_HEADERS),
                ("Access-Control-Max-Age", "86400"),
            ]
        else:
            headers.append(("Access-Control-Expose-Headers", ", ".join(_TUS_HEADERS)))
        return tuple(headers)


def _json_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
