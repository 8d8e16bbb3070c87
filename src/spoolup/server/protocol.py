"""The server's HTTP/1.1 connections: uvicorn's httptools protocol with bounds and deadlines.

uvicorn's httptools protocol buffers a request's head for as long as it keeps coming
(one 64 MiB header line is read whole) and never times out a request that stops
sending. uvicorn's h11 protocol has a head bound (``h11_max_incomplete_event_size``)
but answers it with a 400 and parses bodies far slower. So the server keeps httptools
and adds, per connection and before the application sees anything:

- a bound on the request line and headers together (``header_limit`` bytes, 431), and
  the same bound on what a chunked body sends between two body bytes (chunk lines and
  trailers); trailers are dropped, never merged into the headers the app was given;
- a deadline for the whole head (``header_timeout`` seconds from its first byte, or
  from the connection's start; 408), so a head sent one byte a second ends;
- an idle deadline while a body is read (``body_timeout`` seconds without a byte while
  the application is waiting for one); the application then sees a disconnect;
- a minimum body rate (``min_body_rate`` bytes a second, measured over windows of
  ``body_timeout`` seconds in which the application was never behind): a body that
  trickles in just fast enough to dodge the idle deadline ends the same way (408);
- one ``Host`` header on every HTTP/1.1 request (RFC 9112, section 3.2: 400 when it
  is missing or repeated), before the application sees the request;
- a cap on open connections (``max_connections``, kept below the file-descriptor
  limit): the ones beyond are answered 503 and closed at once.

Each connection has at most one timer, armed for its next deadline and re-armed when
it fires early, so that receiving data costs one clock read and nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from spoolup.server.logs import CUT_STATUS

if TYPE_CHECKING:
    from spoolup.server.config import ServerConfig

__all__ = ["ConnectionLimits", "connection_limits", "guarded_protocol", "raise_fd_limit"]

logger = logging.getLogger("spoolup.server")

# File descriptors kept for what is not a connection: storage files, logs, the loop.
_FD_RESERVE = 64

_WARN_EVERY = 10.0  # seconds between two log lines about refused connections
_HEAD = "head"  # waiting for (the rest of) a request line and headers
_BODY = "body"  # reading a request body
_APP = "app"  # the body is in: the application is answering


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Bounds on one server's connections (see the module docstring)."""

    header_limit: int = 64 * 1024
    header_timeout: float = 30.0
    body_timeout: float = 60.0
    max_connections: int = 4096
    min_body_rate: int = 1024


def connection_limits(config: ServerConfig) -> ConnectionLimits:
    """The connection bounds ``config`` sets."""
    return ConnectionLimits(
        header_limit=config.header_limit,
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        max_connections=config.max_connections,
        min_body_rate=config.min_body_rate,
    )


def raise_fd_limit() -> int:
    """Raise this process's soft open-file limit to the hard one; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # pragma: no cover - some sandboxes refuse
            pass
    return soft


def connection_cap(limits: ConnectionLimits, fd_limit: int) -> int:
    """``max_connections``, lowered so that each connection can hold a second descriptor.

    An upload holds its socket and a storage file; the rest is kept for the server.
    """
    return max(1, min(limits.max_connections, (fd_limit - _FD_RESERVE) // 2))


def _plain_response(status: int, reason: str, message: str) -> bytes:
    body = ('{"error": "' + message + '"}').encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_TOO_LARGE = _plain_response(431, "Request Header Fields Too Large", "request headers too large")
_HEAD_TIMEOUT = _plain_response(408, "Request Timeout", "request headers not received in time")
_BODY_TIMEOUT = _plain_response(408, "Request Timeout", "request body stalled")
_BODY_TOO_SLOW = _plain_response(408, "Request Timeout", "request body too slow")
_TRAILERS_TOO_LARGE = _plain_response(
    431, "Request Header Fields Too Large", "request trailers too large"
)
_FULL = _plain_response(503, "Service Unavailable", "too many connections")
_NO_HOST = _plain_response(400, "Bad Request", "an HTTP/1.1 request needs one Host header")
_MANY_HOSTS = _plain_response(400, "Bad Request", "more than one Host header")


def guarded_protocol(limits: ConnectionLimits, *, fd_limit: int | None = None) -> type[Any]:
    """The protocol class to give uvicorn as ``http=``, enforcing ``limits``.

    ``fd_limit`` is the open-file limit the cap must stay under (read from the process
    when ``None``).
    """
    if fd_limit is None:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap = connection_cap(limits, fd_limit)
    refusals = [-_WARN_EVERY]  # when the last refusal was logged
    slow_bodies = [-_WARN_EVERY, 0]  # when the last slow body was logged, and how many since
    # The bytes a body must bring in each window (one byte at least: a silent body is idle).
    window_bytes = max(1, int(limits.min_body_rate * limits.body_timeout))

    class GuardedProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with the bounds of :func:`guarded_protocol`."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._phase = _HEAD
            self._head_bytes = 0  # bytes received since the head began
            self._head_size = 0  # the parsed head's size so far
            self._refused = False
            self._since = 0.0  # when the head began, or the body last moved
            self._timer: asyncio.TimerHandle | None = None
            self._unanswered = 0  # requests begun and not yet answered
            self._hosts = 0  # Host headers of the request being parsed
            self._window = 0.0  # when the body's rate window began
            self._window_bytes = 0  # body bytes received in it
            self._app_behind = False  # reading was paused for the app in this window
            self._framing = 0  # body bytes received since the last one for the app
            self._deferred: bytes | None = None  # a refusal waiting for earlier answers

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > cap:
                now = self.loop.time()
                if now - refusals[0] >= _WARN_EVERY:  # one line, not one per connection
                    refusals[0] = now
                    logger.warning("connections refused: %d connections are open", cap)
                self._refuse(_FULL)
                return
            self._start_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._phase == _APP and self._unanswered == 0:
                # The next request's first byte (maybe a blank line, which begins no
                # message for the parser) ends uvicorn's keep-alive timer: time the head.
                self._start_head()
            if self._phase == _HEAD:
                self._head_bytes += len(data)
            else:
                self._since = self.loop.time()
                self._window_bytes += len(data)
                self._framing += len(data)
            super().data_received(data)
            if self._phase == _HEAD and self._head_bytes > limits.header_limit:
                self._refuse(_TOO_LARGE)
            elif self._phase == _BODY and self._framing > limits.header_limit:
                # Chunk lines or trailers without end: the parser would keep them all.
                self._stall(_TRAILERS_TOO_LARGE, 431)

        def on_message_begin(self) -> None:
            if self._refused:  # what follows a refused request in the same read
                return
            super().on_message_begin()
            self._unanswered += 1
            if self._phase != _HEAD:  # a pipelined or keep-alive request
                self._start_head()

        def on_url(self, url: bytes) -> None:
            if self._refused:
                return
            self._head_size += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if self._phase != _HEAD or self._refused:
                return  # a trailer: bounded in data_received, and not the app's header
            self._head_size += len(name) + len(value) + 4  # ": " and CRLF
            if len(name) == 4 and name.lower() == b"host":
                self._hosts += 1
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            # A head that arrived in one read is measured here, before the app starts.
            if self._head_size > limits.header_limit:
                self._refuse_in_turn(_TOO_LARGE)
                return
            hosts, self._hosts = self._hosts, 0
            if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
                self._refuse_in_turn(_MANY_HOSTS if hosts else _NO_HOST)
                return
            self._phase = _BODY
            self._since = self._window = self.loop.time()
            self._window_bytes = self._framing = 0
            self._app_behind = False
            self._disarm()
            self._arm(limits.body_timeout)
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._framing = 0
            if not self._refused:
                super().on_body(body)
                if self.flow.read_paused:
                    self._app_behind = True

        def on_message_complete(self) -> None:
            if self._refused:
                return
            self._phase = _APP
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._unanswered -= 1
            if self._deferred is not None:
                # Only the refused request is left (unless the answer before closed).
                if self._unanswered <= 1 and not self.transport.is_closing():
                    self._refuse(self._deferred)
                return
            if self._unanswered > 0 or self._phase == _BODY:
                # A pipelined request has begun (its head or body keeps its own bound
                # and deadline; uvicorn's keep-alive timer stops at its first byte), or
                # an early answer still waits for the body's end.
                return
            # uvicorn's keep-alive timer now watches the idle connection.
            self._phase = _APP
            self._disarm()

        # -- deadlines ------------------------------------------------------------

        def _start_head(self) -> None:
            self._phase = _HEAD
            self._head_bytes = self._head_size = 0
            self._since = self.loop.time()
            self._disarm()  # a body deadline still armed may be far later
            self._arm(limits.header_timeout)

        def _arm(self, delay: float) -> None:
            if self._timer is None:
                self._timer = self.loop.call_later(max(delay, 0.05), self._deadline)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _deadline(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            now = self.loop.time()
            if self._phase == _HEAD:
                left = self._since + limits.header_timeout - now
                if left <= 0:
                    self._refuse(_HEAD_TIMEOUT)
                else:
                    self._arm(left)
            elif self._phase == _BODY:
                if self.flow.read_paused or self._waiting_for_app():
                    # The application is behind, not the client.
                    self._since = now
                    self._app_behind = True
                if self._since + limits.body_timeout <= now:
                    self._stall(_BODY_TIMEOUT, 408)
                    return
                if self._window + limits.body_timeout <= now:
                    if self._window_bytes < window_bytes and not self._app_behind:
                        self._log_slow_body(now)
                        self._stall(_BODY_TOO_SLOW, 408)
                        return
                    self._window, self._window_bytes, self._app_behind = now, 0, False
                self._arm(min(self._since, self._window) + limits.body_timeout - now)

        def _waiting_for_app(self) -> bool:
            """The client waits for a ``100 Continue`` the application has not asked for."""
            cycle = self.cycle
            return cycle is not None and cycle.waiting_for_100_continue

        def _log_slow_body(self, now: float) -> None:
            slow_bodies[1] += 1
            if now - slow_bodies[0] >= _WARN_EVERY:  # one line, not one per connection
                logger.warning(
                    "request bodies too slow (under %d bytes/s for %g s): %d cut",
                    limits.min_body_rate,
                    limits.body_timeout,
                    slow_bodies[1],
                )
                slow_bodies[0] = now
                slow_bodies[1] = 0

        def _stall(self, response: bytes, status: int) -> None:
            """The body is cut: the application sees a disconnect, the client ``status``."""
            cycle = self.cycle
            started = cycle is not None and cycle.response_started
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
            if not started:
                if cycle is not None:
                    cycle.scope.setdefault("state", {})[CUT_STATUS] = status
                self.transport.write(response)
            self.transport.close()

        def _refuse_in_turn(self, response: bytes) -> None:
            """Refuse a request once the pipelined ones before it are answered."""
            if self._unanswered <= 1:
                self._refuse(response)
                return
            self._refused = True  # nothing more is read or parsed
            self._deferred = response
            self._disarm()
            self._phase = _APP
            self.transport.pause_reading()

        def _refuse(self, response: bytes) -> None:
            self._refused = True
            self._disarm()
            self._phase = _APP
            self.transport.write(response)
            self.transport.close()

    return GuardedProtocol
