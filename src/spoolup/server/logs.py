"""Logging for the upload server: one access-log line per request, and the set-up.

Each request gets an id (the client's ``X-Request-ID`` when it is short and plain, else
a fresh one), echoed in the response's ``X-Request-ID`` header and written in the
access-log line with the method, path, status, bytes received and sent, and duration.
Every other line logged while the request runs carries the same id.

Lines are plain text, or one JSON object each with ``--log-format json``
(``python-json-logger``): ``timestamp``, ``level``, ``logger``, ``message``,
``request_id`` and, for access lines, ``client``, ``method``, ``path``, ``status``,
``bytes_in``, ``bytes_out`` and ``duration_ms``. The same middleware reports each
request's duration to the metrics, by route template.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from spoolup.server.metrics import Metrics

__all__ = [
    "ACCESS_LOGGER",
    "CUT_STATUS",
    "LOG_FORMATS",
    "REQUEST_ID",
    "AccessLogMiddleware",
    "RequestIdFilter",
    "configure_logging",
    "uvicorn_log_config",
]

ACCESS_LOGGER = "spoolup.access"
"""The logger access-log lines go to."""

CUT_STATUS = "spoolup.cut_status"
"""Key of ``scope["state"]`` holding the status the connection layer answered a request
it cut (a stalled or too slow body): the application's own answer never reached the
client, so the access log and the metrics show this one."""

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
# A path longer than this is cut in the log line (the request line may be ~64 KiB).
_MAX_LOGGED = 2048
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(request_id)s"
_JSON_RENAMES = {"levelname": "level", "name": "logger"}

LOG_FORMATS = ("plain", "json")
"""The values of ``--log-format``."""

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "spoolup_request_id", default=None
)
"""The id of the request being served (``None`` outside requests)."""


class RequestIdFilter(logging.Filter):
    """Gives every log record a ``request_id`` attribute: the current request's, or None."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``request_id`` when the record has none; never drops a record."""
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class AccessLogMiddleware:
    """ASGI middleware that writes one access-log line per HTTP request.

    The line is written when the request ends, however it ends (a response, an
    error, a client gone); it never holds a body, only counts its bytes.
    """

    def __init__(
        self,
        app: ASGIApp,
        logger: logging.Logger | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)
        self.metrics = metrics

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
        token = REQUEST_ID.set(request_id)
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
            seconds = time.perf_counter() - start
            # A body cut by the connection layer was answered there, not by the app.
            status = scope.get("state", {}).get(CUT_STATUS, status)
            if self.metrics is not None:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                self.metrics.observe_request(scope["method"], route, status, seconds)
            if self.logger.isEnabledFor(logging.INFO):
                self._log(scope, request_id, status=status, sizes=(received, sent), seconds=seconds)
            REQUEST_ID.reset(token)

    def _log(
        self, scope: Scope, request_id: str, *, status: int, sizes: tuple[int, int], seconds: float
    ) -> None:
        received, sent = sizes
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else "-"
        method = _printable(str(scope["method"]))
        path = _printable(str(scope["path"]))
        fields = {
            "request_id": request_id,
            "client": peer,
            "method": method,
            "path": path,
            "status": status or None,
            "bytes_in": received,
            "bytes_out": sent,
            "duration_ms": round(seconds * 1000, 1),
        }
        self.logger.info(
            '%s %s "%s %s" %s in=%d out=%d %.1fms',
            request_id,
            peer,
            method,
            path,
            status or "-",
            received,
            sent,
            seconds * 1000,
            extra=fields,
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


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        from pythonjsonlogger.core import RESERVED_ATTRS
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            _JSON_FIELDS,
            rename_fields=_JSON_RENAMES,
            timestamp=True,
            # uvicorn repeats each message with terminal colours: not for a log file
            reserved_attrs=[*RESERVED_ATTRS, "color_message", "taskName"],
        )
    return logging.Formatter(_FORMAT)


def configure_logging(
    level: str = "info", *, access_log: bool = True, log_format: str = "plain"
) -> None:
    """Send spoolup's logs to standard error, plain or as JSON lines (``log_format``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger("spoolup")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger(ACCESS_LOGGER).disabled = not access_log


def uvicorn_log_config(level: str = "info", log_format: str = "plain") -> dict[str, Any]:
    """A ``logging.config`` dict for uvicorn: its own messages in spoolup's format.

    uvicorn's access log is off (spoolup writes its own, with request ids and sizes).
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"spoolup": {"()": _formatter, "log_format": log_format}},
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "spoolup",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
