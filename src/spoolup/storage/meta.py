"""Keys and per-object metadata: what a stored object is called and described by.

:func:`validate_key` checks every key before it touches a backend;
:class:`ObjectMeta` is what a writer is given (file name, type, free-form metadata)
and :func:`validate_metadata` checks it; :class:`ObjectInfo` is what a backend tells
of a stored object, :class:`ListPage` one page of a listing and :class:`PartInfo`
one part of a resumable upload.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from spoolup.headers import is_media_type
from spoolup.storage.errors import InvalidKey, InvalidMetadata

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_METADATA_SIZE",
    "ListPage",
    "ObjectInfo",
    "ObjectMeta",
    "PartInfo",
    "decode_metadata_value",
    "encode_metadata_value",
    "validate_key",
    "validate_metadata",
]

MAX_KEY_LENGTH = 1024
"""Bytes of a key, UTF-8 encoded (the S3 limit)."""

# A segment becomes a file name with a prefix and suffix (temp and metadata files):
# 200 bytes leave room under the usual 255-byte NAME_MAX.
MAX_SEGMENT_LENGTH = 200

MAX_METADATA_SIZE = 2048
"""Bytes of metadata names and encoded values of one object (the S3 user-metadata limit)."""

RESERVED_METADATA = frozenset({"filename", "sha256"})

_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_MAX_CONTENT_TYPE = 1024


def validate_key(key: object) -> str:
    """Return ``key`` if it is a safe storage key, else raise :class:`InvalidKey` (400).

    A key is a relative path of ``/``-separated segments: 1 to :data:`MAX_KEY_LENGTH`
    bytes of UTF-8, each segment 1 to 200 bytes; no leading ``/``, no empty segment
    (``a//b``, trailing ``/``), no backslash, no control character, and no segment
    that starts with ``.`` (so never ``.`` or ``..``; names starting with a dot are
    reserved for the backends' own files). The key is not normalised: what is
    returned is what was given.
    """
    if not isinstance(key, str):
        msg = f"a storage key must be a str, not {type(key).__name__}"
        raise InvalidKey(msg)
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey("a storage key must be valid Unicode (no lone surrogates)") from None
    if not encoded:
        raise InvalidKey("a storage key must not be empty")
    if len(encoded) > MAX_KEY_LENGTH:
        msg = f"a storage key must be at most {MAX_KEY_LENGTH} bytes, not {len(encoded)}"
        raise InvalidKey(msg)
    if "\\" in key:
        raise InvalidKey(f"a storage key must not contain a backslash: {key!r}")
    if any(unicodedata.category(c) == "Cc" for c in key):
        raise InvalidKey(f"a storage key must not contain control characters: {key!r}")
    for segment in key.split("/"):
        if not segment:
            msg = f"a storage key must be relative, without empty segments: {key!r}"
            raise InvalidKey(msg)
        if segment.startswith("."):
            msg = f"a storage key segment must not start with '.': {key!r}"
            raise InvalidKey(msg)
        if len(segment.encode("utf-8")) > MAX_SEGMENT_LENGTH:
            msg = f"a storage key segment must be at most {MAX_SEGMENT_LENGTH} bytes: {key!r}"
            raise InvalidKey(msg)
    return key


def validate_metadata(
    filename: str | None, content_type: str | None, metadata: Mapping[str, str] | None
) -> dict[str, str]:
    """Check per-object metadata and return the free-form part as a new dict.

    Names of free-form ``metadata`` are 1 to 64 characters of ``a-z``, ``0-9`` and
    ``-`` (what every S3 endpoint keeps), not ``filename`` or ``sha256`` (reserved);
    values are strings without control characters; empty values are dropped (S3
    does not keep them). Names and percent-encoded values together, with the filename
    and content type, stay within :data:`MAX_METADATA_SIZE` bytes. ``content_type`` is
    printable ASCII whose ``type/subtype`` is an RFC 9110 media type. Raises
    :class:`InvalidMetadata` (400) otherwise.
    """
    extra = dict(metadata or {})
    total = 0
    for name, value in extra.items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name):
            msg = f"metadata name {name!r} must be 1-64 of a-z, 0-9 and '-'"
            raise InvalidMetadata(msg)
        if name in RESERVED_METADATA:
            raise InvalidMetadata(f"metadata name {name!r} is reserved")
        if not isinstance(value, str):
            raise InvalidMetadata(f"metadata value of {name!r} must be a str")
        total += len(name) + len(encode_metadata_value(value))
        if any(unicodedata.category(c) == "Cc" for c in value):
            # CR or LF in a value could split a response header when it is served.
            raise InvalidMetadata(f"metadata value of {name!r} holds a control character")
    extra = {name: value for name, value in extra.items() if value}
    if content_type is not None and not _storable_type(content_type):
        msg = f"content type {content_type[:64]!r} is not a printable ASCII media type"
        raise InvalidMetadata(msg)
    for label, given in (("filename", filename), ("content-type", content_type)):
        if given is not None:
            total += len(label) + len(encode_metadata_value(given))
    if total > MAX_METADATA_SIZE:
        msg = f"metadata of {total} bytes exceeds {MAX_METADATA_SIZE} bytes (file name too long?)"
        raise InvalidMetadata(msg)
    return extra


def _storable_type(value: str) -> bool:
    """A ``Content-Type`` a backend can keep and a server send back: printable ASCII,
    bounded, whose ``type/subtype`` is an RFC 9110 media type (parameters allowed)."""
    if not (value.isascii() and value.isprintable() and len(value) <= _MAX_CONTENT_TYPE):
        return False
    return is_media_type(value.partition(";")[0].strip().lower())


def encode_metadata_value(value: str) -> str:
    """Percent-encode ``value`` into printable ASCII (for HTTP headers); reversible."""
    from urllib.parse import quote

    return quote(value, safe=" !#$&'()*+,/:;=?@[]^`{|}~")


def decode_metadata_value(value: str) -> str:
    """Undo :func:`encode_metadata_value`."""
    from urllib.parse import unquote

    return unquote(value, errors="replace")


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What a writer is told about the object it writes, besides its bytes.

    Attributes:
        filename: the file name to keep with the object (the client's safe name), or None.
        content_type: its media type, or None.
        metadata: free-form string metadata (see :func:`validate_metadata`).
    """

    filename: str | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def checked(self) -> ObjectMeta:
        """This meta with its metadata checked and copied; raises :class:`InvalidMetadata`."""
        extra = validate_metadata(self.filename, self.content_type, self.metadata)
        return ObjectMeta(self.filename, self.content_type, extra)


NO_META = ObjectMeta()
"""The meta of an object written with none: no file name, no type, no metadata."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectInfo:
    """What a backend knows of one stored object.

    Attributes:
        key: the object's key (without any backend prefix).
        size: bytes.
        created: when the object was committed (timezone-aware, UTC).
        filename: the file name given at write time (the client's safe name), or None.
        content_type: the type given at write time, or None.
        sha256: hex digest of the bytes, or None when unknown.
        etag: an opaque validator that changes whenever the bytes change, or None.
        metadata: free-form string metadata given at write time.

    :meth:`Storage.list` may leave ``filename``, ``content_type``, ``sha256`` and
    ``metadata`` empty (S3 listings do not carry them); :meth:`Storage.stat` fills them.
    """

    key: str
    size: int
    created: datetime
    filename: str | None = None
    content_type: str | None = None
    sha256: str | None = None
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def meta(self) -> ObjectMeta:
        """The file name, type and metadata given at write time, as one value."""
        return ObjectMeta(self.filename, self.content_type, self.metadata)


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing: ``items`` in key order, and ``next_token`` for the next.

    ``next_token`` is ``None`` on the last page; pass it back as ``token=`` otherwise.
    """

    items: list[ObjectInfo]
    next_token: str | None


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One uploaded part of a resumable (multipart) upload.

    Attributes:
        number: the part number, from 1.
        size: bytes in the part.
        etag: the backend's tag for the part (needed by S3 to complete).
    """

    number: int
    size: int
    etag: str
