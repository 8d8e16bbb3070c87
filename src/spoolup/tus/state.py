"""What the server knows of one tus upload, kept as JSON in storage (no I/O here).

An :class:`UploadInfo` is everything a server needs to continue an upload that another
server (or this one before a restart) began: offset, length, metadata, expiry,
concatenation, and the storage backend's own state (an S3 multipart upload id and its
parts, for instance) in :attr:`UploadInfo.backend`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from spoolup.errors import UploadError

__all__ = ["StateError", "UploadInfo"]

_FORMAT = 1
# Metadata keys that tus clients use for the file's name and type.
_NAME_KEYS = ("filename", "name")
_TYPE_KEYS = ("filetype", "type", "contentType", "content_type")


class StateError(UploadError):
    """Stored upload state cannot be read back; the upload is treated as lost (410)."""

    status = 410


@dataclass(slots=True, kw_only=True)
class UploadInfo:
    """The state of one upload.

    Attributes:
        id: the server-made upload id.
        length: total bytes, or ``None`` while deferred.
        offset: bytes received and kept so far.
        metadata: ``Upload-Metadata`` pairs, values still base64-encoded.
        created: creation time, seconds since the epoch.
        expires: when the unfinished upload is removed, or ``None``.
        concat: ``"partial"``, ``"final"`` or ``None``.
        parts: for a final upload, the ids of its partial uploads, in order.
        part_urls: the same as the client named them, echoed in ``Upload-Concat``.
        backend: the storage backend's state (JSON-able), opaque to the protocol.
        record: what the completion callback returned, once the upload is done.
        synced: bytes known durable (the last checkpoint); ``offset`` may be ahead of
            it between checkpoints, and falls back to it if those bytes were lost.
        rev: a token changed by every save, so a server can tell whether anyone else
            wrote the upload since it did.
        client: who created it (see :func:`spoolup.tus.quota.client_key`), for the
            per-client cap on unfinished uploads.
    """

    id: str
    length: int | None
    offset: int = 0
    metadata: tuple[tuple[str, str], ...] = ()
    created: float = 0.0
    expires: float | None = None
    concat: Literal["partial", "final"] | None = None
    parts: tuple[str, ...] = ()
    part_urls: tuple[str, ...] = ()
    backend: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    synced: int = 0
    rev: str = ""
    client: str = ""

    @property
    def is_complete(self) -> bool:
        """Whether every byte has arrived."""
        return self.length is not None and self.offset == self.length

    def meta(self, key: str) -> str | None:
        """The metadata value of ``key`` decoded as UTF-8 text, or ``None``."""
        for k, v in self.metadata:
            if k == key:
                try:
                    return base64.b64decode(v, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return None
        return None

    @property
    def filename(self) -> str | None:
        """The file name the client gave in its metadata (unchecked), if any."""
        return next((v for k in _NAME_KEYS if (v := self.meta(k))), None)

    @property
    def content_type(self) -> str | None:
        """The media type the client gave in its metadata (unchecked), if any."""
        return next((v for k in _TYPE_KEYS if (v := self.meta(k))), None)

    def to_json(self) -> bytes:
        """The state as UTF-8 JSON bytes."""
        data = {
            "format": _FORMAT,
            "id": self.id,
            "length": self.length,
            "offset": self.offset,
            "metadata": [list(p) for p in self.metadata],
            "created": self.created,
            "expires": self.expires,
            "concat": self.concat,
            "parts": list(self.parts),
            "part_urls": list(self.part_urls),
            "backend": self.backend,
            "record": self.record,
            "synced": self.synced,
            "rev": self.rev,
            "client": self.client,
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UploadInfo:
        """Read state written by :meth:`to_json`; raise :class:`StateError` if it is damaged."""
        try:
            raw = json.loads(data)
        except ValueError:
            raw = None
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
            msg = "damaged upload state: unknown format"
            raise StateError(msg)
        try:
            length = raw["length"]
            concat = raw["concat"]
            info = cls(
                id=str(raw["id"]),
                length=None if length is None else int(length),
                offset=int(raw["offset"]),
                metadata=tuple((str(k), str(v)) for k, v in raw["metadata"]),
                created=float(raw["created"]),
                expires=None if raw["expires"] is None else float(raw["expires"]),
                concat=concat if concat in ("partial", "final") else None,
                parts=tuple(str(p) for p in raw["parts"]),
                part_urls=tuple(str(p) for p in raw["part_urls"]),
                backend=dict(raw["backend"]),
                record=None if raw["record"] is None else dict(raw["record"]),
                synced=int(raw.get("synced", 0)),
                rev=str(raw.get("rev", "")),
                client=str(raw.get("client", "")),
            )
        except (ValueError, TypeError, KeyError) as exc:
            msg = f"damaged upload state: {exc}"
            raise StateError(msg) from None
        if not 0 <= info.synced <= info.offset or (
            info.length is not None and info.offset > info.length
        ):
            msg = "damaged upload state: offset out of range"
            raise StateError(msg)
        return info
