"""Share links and upload links: signed, expiring URLs that need no token.

A **share link** (``/s/<id>.<expires>.<signature>``) downloads one file, read-only. An
**upload link** (``/u/<nonce>.<expires>.<max size>.<max files>.<signature>``) opens an
upload-only page: whoever holds it can send up to ``max files`` files of up to ``max
size`` bytes each, and sees nothing else (no list, no downloads). Both carry their own
expiry (Unix seconds) and an HMAC-SHA256 over everything they say, keyed with the
server's link secret; nothing about a link is stored but the count of files an upload
link has taken (``links/<expires>.<nonce>/<file id>`` markers, so several servers
sharing the storage count together; the storage sweep removes those of expired links).

The secret is ``share_secret`` from the settings, or derived from the token when that
is unset; several servers given the same one honour each other's links, and changing
it revokes every link at once. A server without a token makes no links: every file is
already open to anyone who can reach it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from spoolup.errors import MalformedRequest, UploadError
from spoolup.limits import Limits
from spoolup.server.config import ConfigError, ServerConfig, parse_duration, parse_size
from spoolup.server.records import FileRecord, is_file_id
from spoolup.storage.base import Storage

__all__ = [
    "LinkError",
    "LinkSigner",
    "UploadLink",
    "link_routes",
    "sweep_link_markers",
]

_MAX_BODY = 4096
_MAX_LINK = 512
_MAX_FILES_PER_LINK = 1000
_DEFAULT_FILES_PER_LINK = 10
_MARKERS = "links/"
_NONCE_BYTES = 12


class LinkError(UploadError):
    """A link that is malformed or forged (403), or has expired (410)."""

    status = 403


@dataclass(frozen=True, slots=True)
class UploadLink:
    """What an upload link allows.

    Attributes:
        nonce: its random name (the files it took are counted under it).
        expires: Unix time after which it is refused.
        max_size: bytes of one file.
        max_files: files in all.
    """

    nonce: str
    expires: int
    max_size: int
    max_files: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


class LinkSigner:
    """Signs and checks links with one secret (performs no I/O)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_config(cls, config: ServerConfig) -> LinkSigner | None:
        """The signer for ``config``, or ``None`` when the server has no token."""
        if not config.token:
            return None
        if config.share_secret:
            return cls(config.share_secret.encode())
        return cls(hmac.new(config.token.encode(), b"spoolup link key", hashlib.sha256).digest())

    def _sign(self, kind: str, fields: list[str]) -> str:
        message = ":".join([kind, *fields]).encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    def share(self, file_id: str, expires: int) -> str:
        """The link text for downloading ``file_id`` until ``expires`` (Unix seconds)."""
        fields = [file_id, str(expires)]
        return ".".join([*fields, self._sign("share", fields)])

    def upload(self, link: UploadLink) -> str:
        """The link text for ``link``."""
        fields = [link.nonce, str(link.expires), str(link.max_size), str(link.max_files)]
        return ".".join([*fields, self._sign("upload", fields)])

    def _open(self, kind: str, text: str, count: int, now: float) -> list[str]:
        parts = text.split(".")
        if len(text) > _MAX_LINK or len(parts) != count + 1:
            msg = "this link is not valid: check that it was copied whole"
            raise LinkError(msg)
        *fields, signature = parts
        if not hmac.compare_digest(signature.encode(), self._sign(kind, fields).encode()):
            msg = "this link is not valid (copied wrong, or revoked)"
            raise LinkError(msg)
        expires = int(fields[1])  # signed by us: digits
        if now > expires:
            msg = f"this link expired on {_iso(expires)}: ask for a new one"
            raise LinkError(msg, status=410)
        return fields

    def check_share(self, text: str, now: float | None = None) -> str:
        """The file id a share link names; raises :class:`LinkError` if it is not valid now."""
        file_id, _ = self._open("share", text, 2, time.time() if now is None else now)
        return file_id

    def check_upload(self, text: str, now: float | None = None) -> UploadLink:
        """What an upload link allows; raises :class:`LinkError` if it is not valid now."""
        nonce, expires, size, files = self._open(
            "upload", text, 4, time.time() if now is None else now
        )
        return UploadLink(nonce, int(expires), int(size), int(files))


# ---------------------------------------------------------------- routes

SendFile = Callable[[Request, str], Awaitable[Response]]
ReceiveFiles = Callable[[Request, Limits], Awaitable[tuple[list[FileRecord], Any]]]


def _no_constant(name: str) -> None:
    msg = f"{name} is not a number JSON allows"
    raise ValueError(msg)


async def _small_json(request: Request) -> dict[str, Any]:
    """The request's JSON object (at most 4 KiB; an empty body is ``{}``)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            msg = f"the JSON body must be at most {_MAX_BODY} bytes"
            raise MalformedRequest(msg)
    if not body.strip():
        return {}
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except ValueError:
        raise MalformedRequest("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise MalformedRequest("the body must be a JSON object")
    return data


def _signer(request: Request) -> LinkSigner:
    signer: LinkSigner | None = request.app.state.link_signer
    if signer is None:
        msg = "this server has no token, so every file is already open: share its address"
        raise UploadError(msg, status=409)
    return signer


def _config(request: Request) -> ServerConfig:
    config: ServerConfig = request.app.state.config
    return config


def _expiry(request: Request, body: dict[str, Any]) -> int:
    """Unix seconds when a new link expires: ``ttl`` asked for, at most ``share_ttl``."""
    longest = _config(request).share_ttl
    ttl = longest
    if body.get("ttl") is not None:
        try:
            ttl = parse_duration(body["ttl"], "ttl")
        except ConfigError as exc:
            raise MalformedRequest(str(exc)) from None
        if not 0 < ttl <= longest:
            msg = f"ttl must be more than 0 and at most {longest:.0f} seconds (--share-ttl)"
            raise MalformedRequest(msg)
    return math.ceil(time.time() + ttl)


def _bounded(body: dict[str, Any], name: str, default: int, high: int, size: bool) -> int:
    value = body.get(name)
    if value is None:
        return default
    try:
        # parse_size refuses a float where int() would cut 1.5 to 1 without a word.
        whole = size or isinstance(value, float)
        number = parse_size(value, name) if whole else int(value)
    except (ConfigError, TypeError, ValueError):
        msg = f"{name} must be a whole number"
        raise MalformedRequest(msg) from None
    if not 1 <= number <= high:
        msg = f"{name} must be from 1 to {high}"
        raise MalformedRequest(msg)
    return number


async def create_share(request: Request) -> Response:
    """``POST /api/files/{file_id}/share``: 201 ``{url, expires}``; body ``{"ttl": ...}``."""
    signer = _signer(request)
    file_id = request.path_params["file_id"]
    body = await _small_json(request)
    if not is_file_id(file_id) or await request.app.state.store.get(file_id) is None:
        return JSONResponse({"error": "no such file"}, status_code=404)
    expires = _expiry(request, body)
    url = f"{request.base_url}s/{signer.share(file_id, expires)}"
    return JSONResponse({"url": url, "expires": _iso(expires)}, status_code=201)


async def create_upload_link(request: Request) -> Response:
    """``POST /api/upload-links``: 201 ``{url, expires, max_size, max_files}``.

    Body (all optional): ``ttl``, ``max_size`` (bytes of one file, at most the server's
    ``max_file_size``), ``max_files`` (10 unless told; at most 1,000).
    """
    signer = _signer(request)
    body = await _small_json(request)
    largest = _config(request).limits.max_file_size
    link = UploadLink(
        nonce=secrets.token_hex(_NONCE_BYTES),
        expires=_expiry(request, body),
        max_size=_bounded(body, "max_size", largest, largest, size=True),
        max_files=_bounded(
            body, "max_files", _DEFAULT_FILES_PER_LINK, _MAX_FILES_PER_LINK, size=False
        ),
    )
    url = f"{request.base_url}u/{signer.upload(link)}"
    return JSONResponse(
        {
            "url": url,
            "expires": _iso(link.expires),
            "max_size": link.max_size,
            "max_files": link.max_files,
        },
        status_code=201,
    )


def _upload_link(request: Request) -> UploadLink:
    signer: LinkSigner | None = request.app.state.link_signer
    if signer is None:
        raise LinkError("this server makes no upload links")
    return signer.check_upload(request.path_params["link"])


def _markers(link: UploadLink) -> str:
    """The key prefix of the files ``link`` took; its expiry first, so a sweep can tell."""
    return f"{_MARKERS}{link.expires}.{link.nonce}/"


async def _taken(request: Request, link: UploadLink) -> int:
    storage = request.app.state.store.storage
    page = await storage.alist(_markers(link), limit=_MAX_FILES_PER_LINK)
    return len(page.items)


def sweep_link_markers(storage: Storage, now: float) -> int:
    """Remove the markers of upload links that expired before ``now``; return how many.

    A key not of the ``links/<expires>.<nonce>/<file id>`` form is left alone.
    """
    expired: list[str] = []
    token: str | None = None
    while True:
        page = storage.list(_MARKERS, token=token)
        for item in page.items:
            expires, dot, _rest = item.key.removeprefix(_MARKERS).partition(".")
            if dot and expires.isdigit() and int(expires) < now:
                expired.append(item.key)
        token = page.next_token
        if token is None:
            break
    for key in expired:
        storage.delete(key)
    return len(expired)


async def upload_link_limits(request: Request) -> Response:
    """``GET /u/{link}/limits``: what this upload link still allows."""
    link = _upload_link(request)
    left = max(0, link.max_files - await _taken(request, link))
    return JSONResponse(
        {
            "max_file_size": link.max_size,
            "files_left": left,
            "max_files": link.max_files,
            "expires": _iso(link.expires),
        }
    )


async def _give_back(request: Request, link: UploadLink, records: list[FileRecord]) -> None:
    """Undo files that overshot the link's count: uploads run at once all saw room.

    Counting again after the markers are written (rather than holding a lock) keeps
    the cap across servers sharing the storage; racing uploads may all be refused.
    """
    store = request.app.state.store
    for record in records:
        await store.delete(record.id)
        await store.storage.adelete(f"{_markers(link)}{record.id}")
    request.app.state.file_index.invalidate()
    msg = "another upload with this link took the room these files needed: send them again"
    raise UploadError(msg, status=409)


def _upload_handler(receive_files: ReceiveFiles) -> Callable[[Request], Awaitable[Response]]:
    """The handler of ``POST /u/{link}/files``, over the server's own multipart receiver."""

    async def upload_with_link(request: Request) -> Response:
        """Store the files of a multipart body sent with an upload link; 201, names only."""
        link = _upload_link(request)
        left = link.max_files - await _taken(request, link)
        if left <= 0:
            msg = f"this upload link has taken all the {link.max_files} files it allows"
            raise UploadError(msg, status=410)
        config = _config(request).limits
        limits = replace(
            config,
            max_file_size=min(config.max_file_size, link.max_size),
            max_files=min(config.max_files, left),
            max_fields=16,
        )
        records, finish = await receive_files(request, limits)
        storage = request.app.state.store.storage
        for record in records:
            await storage.awrite(f"{_markers(link)}{record.id}", b"")
        if await _taken(request, link) > link.max_files:
            await _give_back(request, link, records)
        answer = [{"filename": r.filename, "size": r.size, "sha256": r.sha256} for r in records]
        return JSONResponse(answer, status_code=201, background=finish)

    return upload_with_link


def link_routes(
    *, send_file: SendFile, receive_files: ReceiveFiles, page: Callable[..., Awaitable[Response]]
) -> list[BaseRoute]:
    """The routes of links: making them (under ``/api``, token needed) and using them."""

    async def download_shared(request: Request) -> Response:
        """``GET /s/{link}``: the file a share link names, as ``GET /api/files/{id}`` sends it."""
        signer: LinkSigner | None = request.app.state.link_signer
        if signer is None:
            raise LinkError("this server makes no share links")
        return await send_file(request, signer.check_share(request.path_params["link"]))

    async def upload_page(request: Request) -> Response:
        """``GET /u/{link}``: the page, in upload-only mode (it reads its own address).

        Served whatever the link: the page asks ``/u/{link}/limits`` and says in words
        why a link is refused.
        """
        return await page(request)

    return [
        Route("/api/files/{file_id}/share", create_share, methods=["POST"]),
        Route("/api/upload-links", create_upload_link, methods=["POST"]),
        Route("/s/{link}", download_shared, methods=["GET", "HEAD"]),
        Route("/u/{link}", upload_page, methods=["GET"]),
        Route("/u/{link}/limits", upload_link_limits, methods=["GET"]),
        Route("/u/{link}/files", _upload_handler(receive_files), methods=["POST"]),
    ]
