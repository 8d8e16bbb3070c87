"""Who may talk to the server from a browser: the ``Host`` check, cross-origin writes, CORS.

A server without a token (the default on loopback) is open to every page the user's
browser visits, unless it refuses what a browser sends on another site's behalf:

- a ``Host`` that is not one of the server's names (DNS rebinding: a page of
  ``evil.example`` resolved to 127.0.0.1) is a 421, on every path; two ``Host``
  headers are a 400 (RFC 9112);
- a state-changing request (anything but ``GET``, ``HEAD`` and a CORS preflight) whose
  ``Origin`` is not the server's own nor an allowed one, or that a browser marks
  ``Sec-Fetch-Site: cross-site``/``same-site`` without an ``Origin``, is a 403;
- CORS headers are sent only for the allowed origins (``/tus`` by the tus app, the rest
  by Starlette's ``CORSMiddleware``).

Clients that are not browsers (curl, the CLI, tus clients) send no ``Origin`` and no
``Sec-Fetch-Site``, and pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from spoolup.server.config import is_loopback

__all__ = ["LOOPBACK_NAMES", "OriginGuardMiddleware", "default_allowed_hosts"]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""The names a server listening on loopback answers to by default."""

_WILDCARD_ADDRESSES = {"", "0.0.0.0", "::"}  # noqa: S104 - names, not a bind
_SAFE_METHODS = {"GET", "HEAD"}
_CROSS_SITE = {b"cross-site", b"same-site"}


def default_allowed_hosts(host: str) -> tuple[str, ...]:
    """The names a server listening on ``host`` answers to when none are configured.

    Loopback: ``localhost`` and the loopback addresses. A wildcard address (``0.0.0.0``)
    cannot know the names it is reached by: any (set ``--allowed-host`` there). Any
    other address or name: itself.
    """
    if host in _WILDCARD_ADDRESSES:
        return ("*",)
    if is_loopback(host):
        return tuple(dict.fromkeys((*LOOPBACK_NAMES, host.strip("[]").lower())))
    return (host.strip("[]").lower(),)


def _hostname(host: str) -> str:
    """``host`` (a ``Host`` value or an origin's authority) without its port, lowercased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _host_allowed(name: str, allowed: Iterable[str]) -> bool:
    for pattern in allowed:
        if pattern in {"*", name}:
            return True
        if pattern.startswith("*.") and (name == pattern[2:] or name.endswith(pattern[1:])):
            return True
    return False


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


def _json_error(status: int, message: str) -> tuple[dict[str, object], dict[str, object]]:
    body = json.dumps({"error": message}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class OriginGuardMiddleware:
    """ASGI middleware applying the rules of the module docstring.

    ``allowed_hosts``: host names (``*`` any, ``*.example.org`` a domain and its
    subdomains). ``cors_origins``: origins (``https://app.example.org``; ``*`` any) that
    may write and read cross-origin. ``tus_prefix``: the mount whose app answers CORS itself.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Sequence[str],
        cors_origins: Sequence[str] = (),
        tus_prefix: str = "/tus",
    ) -> None:
        self.app = app
        self.allowed_hosts = tuple(h.lower().rstrip(".") for h in allowed_hosts)
        self.cors_origins = tuple(o.rstrip("/") for o in cors_origins)
        self.tus_prefix = tus_prefix
        self.cors_app: ASGIApp = app
        if self.cors_origins:
            self.cors_app = CORSMiddleware(
                app,
                allow_origins=self.cors_origins,
                allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Range", "X-Request-ID"],
                expose_headers=["Content-Disposition", "Content-Range", "ETag", "X-Request-ID"],
                max_age=3600,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a foreign ``Host`` or a cross-origin write; add CORS where allowed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if sum(name == b"host" for name, _ in scope["headers"]) > 1:
            await self._refuse(send, 400, "more than one Host header")
            return
        host = _header(scope, b"host")
        name = _hostname(host.decode("latin-1")) if host is not None else None
        if name is not None and not _host_allowed(name, self.allowed_hosts):
            await self._refuse(send, 421, "this server does not answer to that host name")
            return
        if self._cross_origin_write(scope, host):
            await self._refuse(send, 403, "cross-origin request refused")
            return
        path: str = scope["path"]
        if path == self.tus_prefix or path.startswith(self.tus_prefix + "/"):
            await self.app(scope, receive, send)
        else:
            await self.cors_app(scope, receive, send)

    def _cross_origin_write(self, scope: Scope, host: bytes | None) -> bool:
        method: str = scope["method"]
        override = _header(scope, b"x-http-method-override")
        if method in _SAFE_METHODS and override is None:
            return False
        if method == "OPTIONS" and override is None:
            return False  # a preflight or tus capabilities: nothing changes
        origin = _header(scope, b"origin")
        if origin is None:
            return _header(scope, b"sec-fetch-site") in _CROSS_SITE
        text = origin.decode("latin-1").strip().rstrip("/")
        if "*" in self.cors_origins or text in self.cors_origins:
            return False
        if host is None:
            return True
        scheme, sep, authority = text.partition("://")
        # The scheme is not compared: behind a TLS proxy the server sees plain http.
        same = bool(sep) and scheme in {"http", "https"}
        return not (same and authority.lower() == host.decode("latin-1").strip().lower())

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        start, body = _json_error(status, message)
        await send(start)
        await send(body)
