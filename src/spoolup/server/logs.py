"""Logging for the upload server: one access-log line per request, and the set-up.

Each request gets an id (the client's ``X-Request-ID`` when it is short and plain, else
a fresh one), echoed in the response's ``X-Request-ID`` header and written in the
access-log line with the method, path, status, bytes received and sent, and duration.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ACCESS_LOGGER", "AccessLogMiddleware", "configure_logging", "uvicorn_log_config"]

ACCESS_LOGGER = "spoolup.access"
"""The logger access-log lines go to."""

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
# A path longer than this is cut in the log line (the request line may be ~64 KiB).
_MAX_LOGGED = 2048
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class AccessLogMiddleware:
    """ASGI middleware that writes one access-log line per HTTP request.

    The line is written when the request ends, however it ends (a response, an
    error, a client gone); it never holds a body, only counts its bytes.
    """

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, counting bytes in and out, and log it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                request_id = value.decode("ascii")
        if request_id is None:
            request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        received = sent = 0
        status = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal sent, status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            client = scope.get("client")
            self.logger.info(
                '%s %s "%s %s" %s in=%d out=%d %.1fms',
                request_id,
                f"{client[0]}:{client[1]}" if client else "-",
                _printable(str(scope["method"])),
                _printable(str(scope["path"])),
                status or "-",
                received,
                sent,
                (time.perf_counter() - start) * 1000,
            )


def _printable(text: str) -> str:
    """``text`` fit for one log line: bounded, control characters and quotes escaped.

    The path is decoded from the request line, so ``%0A`` would otherwise start a forged
    log line of the client's making.
    """
    if len(text) > _MAX_LOGGED:
        text = text[:_MAX_LOGGED] + "..."
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(_escape(c) for c in text)


def _escape(char: str) -> str:
    if char == '"':
        return '\\"'
    if char.isprintable() and char != "\\":
        return char
    return char.encode("unicode_escape").decode("ascii")


def configure_logging(level: str = "info", *, access_log: bool = True) -> None:
    """Send spoolup's and uvicorn's logs to standard error in one plain format."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger("spoolup")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger(ACCESS_LOGGER).disabled = not access_log


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config`` dict for uvicorn: its own messages in spoolup's format.

    uvicorn's access log is off (spoolup writes its own, with request ids and sizes).
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": _FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
