"""Bearer-token authentication for the ``/api``, ``/tus`` and ``/metrics`` paths of the server."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PROTECTED_PREFIXES", "BearerAuthMiddleware", "token_matches"]

PROTECTED_PREFIXES = ("/api/", "/tus/", "/metrics/")
"""Paths (and the same without the trailing slash) that need the token when one is set."""


def token_matches(header: bytes | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header value carries ``Bearer <token>``.

    The comparison takes the same time wherever the two tokens differ, so that the
    token cannot be guessed one character at a time from response times.
    """
    if header is None:
        return False
    scheme, _, given = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token)


def _overridden(scope: Scope) -> bool:
    """Whether the request names another method in ``X-HTTP-Method-Override``."""
    return any(
        name == b"x-http-method-override" and value.strip().upper() != b"OPTIONS"
        for name, value in scope["headers"]
    )


def _protected(scope: Scope) -> bool:
    path: str = scope["path"]
    if (
        scope["method"] == "OPTIONS"
        and (path.startswith("/tus/") or path == "/tus")
        and not _overridden(scope)
    ):
        # A browser's CORS preflight never carries credentials, and tus answers OPTIONS
        # with its capabilities only: requiring the token there would lock out every
        # cross-origin tus client. The tus app honours X-HTTP-Method-Override, so an
        # OPTIONS that names another method is that method and needs the token.
        return False
    return any(path.startswith(p) or path == p.rstrip("/") for p in PROTECTED_PREFIXES)


class BearerAuthMiddleware:
    """ASGI middleware: a request under ``/api`` or ``/tus`` without the token gets a 401.

    The 401 is JSON ``{"error": ...}`` with ``WWW-Authenticate: Bearer``; the body is
    never read. Other paths (the page, its static files, ``/healthz``) are open, and so
    is ``OPTIONS`` under ``/tus`` (CORS preflight and tus capability discovery).
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on if it is open or authorised, else answer 401."""
        if scope["type"] != "http" or not _protected(scope):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        if token_matches(header, self.token):
            await self.app(scope, receive, send)
            return
        error = "missing bearer token" if header is None else "invalid bearer token"
        body = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="spoolup"'),
                    # The body was not read: ask the client not to reuse the connection.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
