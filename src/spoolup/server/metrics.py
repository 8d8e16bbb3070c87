"""Prometheus metrics of the upload server, kept in one registry per app.

:class:`Metrics` holds the registry and every metric; the routes, the tus mount, the
hooks and the storage report into it through a few methods, and ``GET /metrics``
(or ``--metrics-port``) renders it in the Prometheus text format with
``prometheus-client``. Every label takes its values from a short fixed list (never a
path, a method name or a message a client chose), so a client cannot grow the
number of series.

Series (all prefixed ``spoolup_``)::

    uploads_started_total{way}            way: multipart, put, tus
    uploads_completed_total{way}
    uploads_failed_total{way,reason}      reason: see FAILURE_REASONS
    received_bytes_total{way}             request body bytes of uploads
    uploads_in_flight{way}                upload requests receiving a body now
    request_duration_seconds{method,route,status}   every HTTP request
    storage_operation_duration_seconds{operation}   every storage call (count + time)
    storage_errors_total{operation}
    hook_calls_total{hook,outcome}        outcome: ok, rejected, failed, dropped
    hook_duration_seconds{hook}
    sweeps_total{kind,outcome}            outcome: ok, failed
    swept_total{kind}                     things a sweep removed

Sweeps are counted by whoever runs them: ``app.state.metrics.sweep("tus", removed=3)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive

from spoolup._part_buffers import PROCESS_BUFFERS
from spoolup.errors import RequestTooLarge, UnsupportedMediaType, UploadAborted, UploadError
from spoolup.storage import InsufficientStorage, Storage, StorageError

__all__ = [
    "CONTENT_TYPE",
    "FAILURE_REASONS",
    "STORAGE_OPERATIONS",
    "WAYS",
    "Metrics",
    "failure_reason",
    "metrics_endpoint",
    "status_reason",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of the rendered metrics."""

WAYS: Final = ("multipart", "put", "tus")
"""How a file arrives: ``POST /api/files``, ``PUT /api/files/{name}``, ``/tus``."""

FAILURE_REASONS: Final = (
    "too_large",  # a limit crossed (413)
    "unsupported_type",  # 415
    "bad_request",  # malformed body or headers (400)
    "client_gone",  # the client left before the body ended
    "rejected_by_hook",  # a pre-create or pre-finish hook said no
    "hook_failed",  # a blocking hook could not be reached or failed
    "storage_full",  # 507
    "storage_error",  # the storage backend failed
    "refused",  # any other client error
    "internal",  # a bug
)
"""The values of the ``reason`` label of ``uploads_failed_total``."""

STORAGE_OPERATIONS: Final = (
    "open_writer",
    "commit",
    "abort",
    "open",
    "stat",
    "list",
    "delete",
    "move",
    "begin_multipart",
    "upload_part",
    "list_parts",
    "complete_multipart",
    "abort_multipart",
)
"""The storage calls that are timed and counted (the primitives, not the helpers built
on them, so that one call is counted once)."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_COUNT_EVERY = 1024 * 1024
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_T = TypeVar("_T")


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` label for an upload that failed with ``exc``."""
    from spoolup.server.hooks import HookFailed, HookRejected

    if isinstance(exc, HookRejected):
        return "rejected_by_hook"
    if isinstance(exc, HookFailed):
        return "hook_failed"
    if isinstance(exc, UploadAborted | asyncio.CancelledError):
        return "client_gone"
    if isinstance(exc, RequestTooLarge):
        return "too_large"
    if isinstance(exc, UnsupportedMediaType):
        return "unsupported_type"
    if isinstance(exc, InsufficientStorage):
        return "storage_full"
    if isinstance(exc, StorageError):
        return "storage_error"
    if isinstance(exc, UploadError):
        return "bad_request" if exc.status == 400 else "refused"
    return "internal"


def status_reason(status: int) -> str:
    """The ``reason`` label for an upload refused with HTTP ``status``."""
    reasons = {400: "bad_request", 413: "too_large", 415: "unsupported_type", 502: "hook_failed"}
    if status in reasons:
        return reasons[status]
    if status == 507:
        return "storage_full"
    return "storage_error" if status >= 500 else "refused"


class Metrics:
    """The server's metrics in a registry of their own (see the module docstring).

    ``enabled=False`` makes every method do nothing and :meth:`render` empty, for
    those who want no metrics at all (and for the benchmark's side-by-side run).
    """

    def __init__(self, *, enabled: bool = True) -> None:
        # No ``*_created`` series beside each counter: they double the output and no
        # dashboard reads them (a process-wide setting of prometheus-client).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.enabled = enabled
        self.served_port: int | None = None
        """The port :meth:`serve` listens on (the one bound, when asked for port 0)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.uploads_started = Counter(
            "spoolup_uploads_started", "Uploads begun, by way.", ["way"], registry=r
        )
        self.uploads_completed = Counter(
            "spoolup_uploads_completed", "Uploads stored and answered, by way.", ["way"], registry=r
        )
        self.uploads_failed = Counter(
            "spoolup_uploads_failed",
            "Uploads that failed, by way and reason.",
            ["way", "reason"],
            registry=r,
        )
        self.received_bytes = Counter(
            "spoolup_received_bytes", "Request body bytes of uploads, by way.", ["way"], registry=r
        )
        self.in_flight = Gauge(
            "spoolup_uploads_in_flight",
            "Upload requests receiving a body right now, by way.",
            ["way"],
            registry=r,
        )
        self.request_duration = Histogram(
            "spoolup_request_duration_seconds",
            "HTTP requests: seconds from the first byte to the end of the answer.",
            ["method", "route", "status"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.storage_duration = Histogram(
            "spoolup_storage_operation_duration_seconds",
            "Storage calls and their seconds, by operation (failed ones included).",
            ["operation"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.storage_errors = Counter(
            "spoolup_storage_errors", "Storage calls that raised, by operation.", ["operation"],
            registry=r,
        )  # fmt: skip
        self.hook_calls = Counter(
            "spoolup_hook_calls",
            "Hook deliveries, by hook and outcome (ok, rejected, failed, dropped).",
            ["hook", "outcome"],
            registry=r,
        )
        self.hook_duration = Histogram(
            "spoolup_hook_duration_seconds",
            "Seconds one hook delivery took, retries included.",
            ["hook"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.sweeps = Counter(
            "spoolup_sweeps", "Sweeps run, by kind and outcome (ok, failed).", ["kind", "outcome"],
            registry=r,
        )  # fmt: skip
        self.swept = Counter(
            "spoolup_swept", "Things sweeps removed, by kind.", ["kind"], registry=r
        )
        # Read when scraped: the part buffers every S3 and tus write of the process shares.
        Gauge(
            "spoolup_part_buffer_bytes",
            "Bytes of multipart part buffers alive in the process (S3 and tus parts).",
            registry=r,
        ).set_function(lambda: PROCESS_BUFFERS.live)
        Gauge(
            "spoolup_part_buffer_budget_bytes",
            "Bytes of part buffers past which writes borrow no more (each keeps its own part).",
            registry=r,
        ).set_function(lambda: PROCESS_BUFFERS.budget)
        for way in WAYS:  # every way shows from the start, at zero
            self.uploads_started.labels(way)
            self.uploads_completed.labels(way)
            self.received_bytes.labels(way)
            self.in_flight.labels(way)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry) if self.enabled else b""

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve the metrics on ``host:port`` in a thread (``--metrics-port``); the stopper.

        Port 0 picks a free port; :attr:`served_port` says which.

        ``prometheus-client``'s own server answers any path with the metrics; calling the
        returned function stops it and releases the port.
        """
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self.served_port = server.server_port

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

        return stop

    # -- uploads ----------------------------------------------------------------------

    @contextmanager
    def upload(self, way: str) -> Iterator[None]:
        """Count one upload of ``way``: started now, then completed or failed by reason.

        For the requests that receive a whole file (multipart and PUT); the tus app
        reports through :meth:`upload_started`, :meth:`upload_completed` and
        :meth:`upload_failed`, as its uploads span several requests.
        """
        if not self.enabled:
            yield
            return
        self.uploads_started.labels(way).inc()
        try:
            yield
        except BaseException as exc:
            self.upload_failed(way, exc)
            raise
        self.uploads_completed.labels(way).inc()

    def upload_started(self, way: str) -> None:
        """Count an upload begun."""
        if self.enabled:
            self.uploads_started.labels(way).inc()

    def upload_completed(self, way: str) -> None:
        """Count an upload stored."""
        if self.enabled:
            self.uploads_completed.labels(way).inc()

    def upload_failed(self, way: str, cause: BaseException | str) -> None:
        """Count an upload failed with ``cause``: an exception, or a reason already known."""
        if self.enabled:
            reason = cause if isinstance(cause, str) else failure_reason(cause)
            self.uploads_failed.labels(way, reason).inc()

    def receiving(self, way: str, receive: Receive) -> Receive:
        """``receive`` counting body bytes of ``way`` as they arrive.

        The request counts as in flight from now until its body ended or the client
        left (or, if the body is never read to its end, until the request ends: see
        :meth:`request_done`).
        """
        if not self.enabled:
            return receive
        received = self.received_bytes.labels(way)
        gauge = self.in_flight.labels(way)
        gauge.inc()
        done = False
        pending = 0

        async def counting_receive() -> Message:
            nonlocal done, pending
            message = await receive()
            if not done:
                if message["type"] == "http.request":
                    pending += len(message.get("body", b""))
                    done = not message.get("more_body", False)
                else:
                    done = True
                # Counted a MiB at a time (a counter takes a lock): live enough to graph.
                if pending >= _COUNT_EVERY or done:
                    received.inc(pending)
                    pending = 0
                if done:
                    gauge.dec()
            return message

        def finish() -> None:
            nonlocal done, pending
            if not done:
                done = True
                received.inc(pending)
                pending = 0
                gauge.dec()

        counting_receive.finish = finish  # type: ignore[attr-defined]
        return counting_receive

    @staticmethod
    def request_done(receive: Receive) -> None:
        """The request that :meth:`receiving` wrapped ended: it is no longer in flight."""
        finish = getattr(receive, "finish", None)
        if finish is not None:
            finish()

    # -- requests, hooks, sweeps --------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request; ``route`` is its route's template, never the raw path."""
        if self.enabled:
            method = method if method in _METHODS else "other"
            self.request_duration.labels(method, route, str(status)).observe(seconds)

    def hook_call(self, hook: str, outcome: str, seconds: float | None = None) -> None:
        """Count one hook delivery (``outcome``: ok, rejected, failed or dropped)."""
        if self.enabled:
            self.hook_calls.labels(hook, outcome).inc()
            if seconds is not None:
                self.hook_duration.labels(hook).observe(seconds)

    def sweep(self, kind: str, *, removed: int = 0, failed: bool = False) -> None:
        """Count one sweep of ``kind`` (tus, temp files, S3 orphans...) and what it removed.

        ``kind`` must come from the code, never from a client.
        """
        if self.enabled:
            self.sweeps.labels(kind, "failed" if failed else "ok").inc()
            if removed:
                self.swept.labels(kind).inc(removed)

    # -- storage ----------------------------------------------------------------------

    def instrument_storage(self, storage: Storage) -> Storage:
        """Time and count every storage primitive ``storage`` is called with; returns it.

        The methods are wrapped on the instance itself, so the object stays what it is
        (its class, its identity, the capabilities others look for), and the async
        twins, which call the blocking methods in worker threads, are counted too.
        A writer's ``commit`` and ``abort`` are counted as well.
        """
        if not self.enabled or getattr(storage, "_spoolup_metrics", None) is self:
            return storage
        for name in STORAGE_OPERATIONS:
            method = getattr(storage, name, None)
            if name in {"commit", "abort"} or method is None:
                continue
            timed = self._timed(name, method)
            if name == "open_writer":
                timed = self._timed_writer(timed)
            with contextlib.suppress(AttributeError):  # a backend with __slots__ goes untimed
                setattr(storage, name, timed)
        with contextlib.suppress(AttributeError):
            storage._spoolup_metrics = self  # type: ignore[attr-defined]
        return storage

    def _timed(self, operation: str, method: Callable[..., _T]) -> Callable[..., _T]:
        histogram = self.storage_duration.labels(operation)
        errors = self.storage_errors.labels(operation)

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> _T:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            except BaseException:
                errors.inc()
                raise
            finally:
                histogram.observe(time.perf_counter() - start)

        return timed

    def _timed_writer(self, open_writer: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(open_writer)
        def timed_open_writer(*args: Any, **kwargs: Any) -> Any:
            writer = open_writer(*args, **kwargs)
            for name in ("commit", "abort"):
                with contextlib.suppress(AttributeError):
                    setattr(writer, name, self._timed(name, getattr(writer, name)))
            return writer

        return timed_open_writer


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the app's metrics in the Prometheus text format."""
    metrics: Metrics = request.app.state.metrics
    body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
