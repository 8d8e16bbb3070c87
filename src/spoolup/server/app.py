"""The upload server as an ASGI application: routes, responses, errors.

``create_app(config)`` builds a Starlette application over the storage that
``config.storage`` names. Request bodies are parsed by spoolup's own drivers (never
the framework's form parser): every file part of ``POST /api/files`` and the body of
``PUT /api/files/{name}`` stream straight into storage with their sha256 computed on
the way; ``POST /api/inspect/image`` keeps its image in memory only.

Every error is JSON ``{"error": "..."}``: an :class:`~spoolup.UploadError` answers with
its ``.status``, an unknown path with 404, a wrong method with 405.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import spoolup.asgi
from spoolup._mediatype import media_type_of_name
from spoolup._part_buffers import PROCESS_BUFFERS
from spoolup.errors import MalformedRequest, UploadError
from spoolup.files import UploadedFile
from spoolup.handlers import MemoryFileHandler
from spoolup.headers import safe_filename
from spoolup.limits import Limits
from spoolup.server.about import limits_json
from spoolup.server.auth import BearerAuthMiddleware
from spoolup.server.config import ConfigError, ServerConfig
from spoolup.server.health import StorageProbe, space_problem
from spoolup.server.hooks import HookCallable, HookDispatcher
from spoolup.server.inspect import inspect_image
from spoolup.server.listing import FileIndex, list_files
from spoolup.server.logs import AccessLogMiddleware
from spoolup.server.metrics import Metrics, metrics_endpoint
from spoolup.server.observe import TusObserver, file_terminated, observe_upload
from spoolup.server.origins import OriginGuardMiddleware, default_allowed_hosts
from spoolup.server.records import FileRecord, is_file_id
from spoolup.server.share import LinkSigner, link_routes
from spoolup.server.store import RecordStore, open_store
from spoolup.server.sweep import LeftoverSweeper
from spoolup.storage import StorageError

if TYPE_CHECKING:
    from spoolup.tus.app import TusApp

__all__ = ["create_app"]

logger = logging.getLogger("spoolup.server")

# Room for the multipart framing around the image in POST /api/inspect/image.
_INSPECT_OVERHEAD = 64 * 1024
_READ_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_MAX_DIGITS = 19
_BEYOND_ANY_FILE = 10_000_000_000_000_000_000  # 10**19: more than any size of 19 digits
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# A stored file is never rendered by the browser as a page of this site.
_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Accept-Ranges": "bytes",
    "Cache-Control": "private, no-cache",
}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.store
    return store


def _config(request: Request) -> ServerConfig:
    config: ServerConfig = request.app.state.config
    return config


def _file_id(request: Request) -> str:
    file_id: str = request.path_params["file_id"]
    if not is_file_id(file_id):
        raise HTTPException(404, "no such file")
    return file_id


# ---------------------------------------------------------------- routes


async def index(request: Request) -> Response:
    """``GET /``: the web page."""
    page = resources.files("spoolup.server").joinpath("static/index.html").read_bytes()
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 when the storage answers and has room, else 503 saying why."""
    probe: StorageProbe = request.app.state.storage_probe
    unavailable = await probe.problem()
    if unavailable is not None:
        return JSONResponse({"status": "unavailable", "error": unavailable}, status_code=503)
    store, min_free = _store(request), _config(request).min_free_space
    problem = await run_in_threadpool(space_problem, store.storage, min_free)
    if problem is not None:
        return JSONResponse({"status": "degraded", "error": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


async def limits(request: Request) -> Response:
    """``GET /api/limits``: what this server takes, for clients to check before sending."""
    return JSONResponse(limits_json(_config(request), links=request.app.state.link_signer))


async def _receive_files(
    request: Request, limits: Limits
) -> tuple[list[FileRecord], BackgroundTask | None]:
    """Store every file part of the multipart body (400 when there is none).

    Returns the records and the post-finish task to run once the client has its answer.
    """
    store = _store(request)
    with observe_upload(request, "multipart") as upload:
        form = await spoolup.asgi.parse_form(
            request.scope, upload.receive, limits=limits, handlers=upload.handlers()
        )
        with form:
            records = [store.record_of(f) for _, f in form.files.multi_items()]
        request.app.state.file_index.invalidate()
        if not records:
            msg = "the form has no file part"
            raise MalformedRequest(msg)
        await upload.pre_finish(records)
    return records, upload.post_finish(records)


async def post_files(request: Request) -> Response:
    """``POST /api/files``: store every file part of a multipart body; 201 with the records."""
    records, finish = await _receive_files(request, _config(request).limits)
    return JSONResponse([r.to_json() for r in records], status_code=201, background=finish)


async def put_file(request: Request) -> Response:
    """``PUT /api/files/{name}``: store the raw body as one file named ``name``; 201."""
    config = _config(request)
    store = _store(request)
    filename = safe_filename(request.path_params["name"])
    content_type = request.headers.get("content-type") or media_type_of_name(filename)
    with observe_upload(request, "put") as upload:
        uploaded = await spoolup.asgi.receive_file(
            request.scope,
            upload.receive,
            filename=filename,
            content_type=content_type,
            limits=config.limits,
            handlers=upload.handlers(),
        )
        assert uploaded is not None  # the storage handler takes every body
        with uploaded:
            record = store.record_of(uploaded)
        await upload.pre_finish([record])
    request.app.state.file_index.invalidate()
    return JSONResponse(record.to_json(), status_code=201, background=upload.post_finish([record]))


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range ``header`` asks for, as ``(first, last)`` inclusive.

    ``None`` means "send the whole file" (no usable single range: several ranges, or
    a unit other than bytes). Raises 416 when the range lies beyond the file.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = (_bounded_int(g) for g in match.groups())
    if first is None and last is None:
        return None
    if first is None:  # "bytes=-N": the last N bytes
        assert last is not None
        length = last
        if length == 0 or size == 0:
            raise HTTPException(416, "range not satisfiable")
        return max(0, size - length), size - 1
    start = first
    end = size - 1 if last is None else min(last, size - 1)
    if last is not None and last < start:
        return None
    if start >= size:
        raise HTTPException(416, "range not satisfiable")
    return start, end


def _bounded_int(digits: str) -> int | None:
    """The number ``digits`` spell (``None`` for none), capped past any real file size.

    ``int()`` refuses more than 4,300 digits with a ValueError, and a long number costs
    time to convert: a position of more than 19 digits is beyond every file anyway.
    """
    if not digits:
        return None
    if len(digits) > _MAX_DIGITS:
        return _BEYOND_ANY_FILE
    return int(digits)


def _content_disposition(filename: str) -> str:
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename)
    encoded = quote(filename, safe="", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


async def get_file(request: Request) -> Response:
    """``GET /api/files/{id}``: the bytes, with ETag and single-range support (206/416)."""
    return await _send_file(request, _file_id(request))


async def _send_file(request: Request, file_id: str) -> Response:
    """The bytes of ``file_id`` for ``request`` (its Range, If-Range, If-None-Match)."""
    store = _store(request)
    record = await store.get(file_id)
    if record is None:
        raise HTTPException(404, "no such file")
    headers = {
        **_DOWNLOAD_HEADERS,
        "ETag": record.etag,
        "Content-Disposition": _content_disposition(record.filename),
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and record.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    byte_range = None
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header and (if_range is None or if_range.strip() == record.etag):
        try:
            byte_range = _parse_range(range_header, record.size)
        except HTTPException:
            headers["Content-Range"] = f"bytes */{record.size}"
            return _error(416, "range not satisfiable", headers)
    status = 200
    start, end = 0, record.size - 1
    if byte_range is not None:
        status = 206
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{record.size}"
    headers["Content-Length"] = str(end - start + 1)
    return _StoredBody(
        store,
        file_id,
        (start, end + 1),
        status=status,
        headers=headers,
        media_type=record.content_type,
    )


class _StoredBody(Response):
    """Streams bytes ``start`` to ``end`` (exclusive) of a stored file.

    The stream is opened before the status line is sent (a file deleted meanwhile is
    still a 404) and closed however the response ends: sent, client gone, cancelled.
    """

    def __init__(
        self,
        store: RecordStore,
        file_id: str,
        span: tuple[int, int],
        *,
        status: int,
        headers: Mapping[str, str],
        media_type: str,
    ) -> None:
        super().__init__(status_code=status, headers=headers, media_type=media_type)
        self.store, self.file_id = store, file_id
        self.start, self.end = span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers, then the bytes read in worker threads."""
        stream = await self.store.open(self.file_id, self.start, self.end)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if scope["method"] != "HEAD":
                while chunk := await run_in_threadpool(stream.read, _READ_CHUNK):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            # Not awaited: a cancelled response must still close its stream.
            stream.close()


async def delete_file(request: Request) -> Response:
    """``DELETE /api/files/{id}``: 204, or 404 when there is no such file."""
    file_id = _file_id(request)
    store = _store(request)
    hooks: HookDispatcher = request.app.state.hooks
    record = await store.get(file_id) if hooks.wants("post-terminate") else None
    if not await store.delete(file_id):
        raise HTTPException(404, "no such file")
    request.app.state.file_index.invalidate()
    if record is not None:
        await file_terminated(request, record)
    return Response(status_code=204)


async def inspect(request: Request) -> Response:
    """``POST /api/inspect/image``: width, height, format and all_white of field ``image``."""
    config = _config(request)
    cap = config.inspect_max_size
    limits = config.limits.__class__(
        max_body_size=cap + _INSPECT_OVERHEAD,
        max_file_size=cap,
        max_files=1,
        max_fields=16,
        max_field_size=4096,
        memory_threshold=cap,
    )
    form = await spoolup.asgi.parse_form(
        request.scope, request.receive, limits=limits, handlers=[MemoryFileHandler]
    )
    with form:
        image = form.files.get("image")
        if image is None:
            msg = "send the image in the form field 'image'"
            raise MalformedRequest(msg)
        data = image.read()
    result = await run_in_threadpool(inspect_image, data, max_pixels=config.inspect_max_pixels)
    return JSONResponse(result)


# ---------------------------------------------------------------- errors


async def _upload_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UploadError)
    closing = exc.status == 413 or getattr(exc, "close_connection", False)
    headers = {"Connection": "close"} if closing else None
    return _error(exc.status, exc.message, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # Starlette's own 404 and 405 carry the status phrase: say it in lowercase.
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "error"
    detail = exc.detail if exc.detail and exc.detail != phrase else phrase.lower()
    return _error(exc.status_code, detail, exc.headers)


async def _storage_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StorageError)
    if exc.status == 404:
        return _error(404, "no such file")
    logger.error("storage failed on %s %s: %s", request.method, request.url.path, exc.message)
    return _error(exc.status, "storage is full" if exc.status == 507 else "storage failed")


class _CatchAll:
    """Outer middleware: an unexpected exception is logged and answered with a JSON 500.

    Unlike Starlette's own error middleware it does not re-raise, so the server keeps
    the connection in a known state; if the response had already started, the
    connection is dropped by raising nothing more than the log line.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; turn an escaped exception into a 500."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if scope["type"] != "http":
                raise
            logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            await _error(500, "internal server error")(scope, receive, send)


# ---------------------------------------------------------------- factory


def _routes(extra: Sequence[BaseRoute], config: ServerConfig) -> list[BaseRoute]:
    file_route = "/api/files/{file_id}"
    return [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/limits", limits, methods=["GET"]),
        Route("/api/files", list_files, methods=["GET"]),
        Route("/api/files", post_files, methods=["POST"]),
        Route("/api/files/{name}", put_file, methods=["PUT"]),
        Route(file_route, get_file, methods=["GET"]),
        Route(file_route, delete_file, methods=["DELETE"]),
        Route("/api/inspect/image", inspect, methods=["POST"]),
        *link_routes(send_file=_send_file, receive_files=_receive_files, page=index),
        *_metrics_routes(config),
        Mount("/static", app=StaticFiles(packages=[("spoolup.server", "static")])),
        *extra,
    ]


def _metrics_routes(config: ServerConfig) -> list[BaseRoute]:
    """``GET /metrics`` here, unless the metrics have a port of their own (or are off)."""
    if not config.metrics or config.metrics_port is not None:
        return []
    return [Route("/metrics", metrics_endpoint, methods=["GET"])]


def _tus_app(
    store: RecordStore, config: ServerConfig, index: FileIndex, observer: TusObserver
) -> TusApp | None:
    """The tus 1.0.0 app for ``/tus``: finished uploads become file records."""
    try:
        from spoolup.tus.app import create_tus_app
    except ImportError:  # pragma: no cover  (the tus package ships with the server)
        return None
    from spoolup.tus.lock import lock_for

    try:
        lock = lock_for(None, config.lock, ttl=config.lease) if config.lock else None
    except ImportError as exc:
        msg = "--lock needs the redis package: pip install 'spoolup[redis]'"
        raise ConfigError(msg) from exc

    async def adopt(uploaded: UploadedFile, info: object = None) -> dict[str, Any]:
        record = await store.adopt(uploaded, info)
        index.invalidate()
        return record

    return create_tus_app(
        store.storage,
        max_size=config.limits.max_file_size,
        on_complete=observer.completion(adopt),
        lease=config.lease,
        lock=lock,
        on_create=observer.before_create,
        allow_origins=config.cors_origins,
        checkpoint_bytes=config.tus_checkpoint,
        checkpoint_seconds=config.tus_checkpoint_seconds,
        max_open_uploads=config.tus_max_open_uploads,
        max_open_per_client=config.tus_max_open_per_client or None,
        final_key=store.new_key,
    )


def create_app(
    config: ServerConfig,
    *,
    store: RecordStore | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    hooks: Mapping[str, HookCallable] | None = None,
) -> Starlette:
    """Build the upload server's ASGI application.

    ``store`` defaults to the storage ``config.storage`` names (a folder, or
    ``s3://bucket/prefix``). The tus app is mounted at ``/tus`` over the same storage;
    a finished tus upload becomes a file record like any other. ``extra_routes`` are
    added too; every route sits behind the same token check and access log.
    ``hooks`` maps hook names (``pre-create``, ``post-finish``...) to Python callables
    (:mod:`spoolup.server.hooks`); they run before the webhook of ``config.hook_url``.
    Raises :class:`~spoolup.server.config.ConfigError` for settings that cannot work.
    """
    config.check()
    PROCESS_BUFFERS.set_budget(config.part_budget)  # one pool for the process
    store = store if store is not None else open_store(config.storage)
    metrics = Metrics(enabled=config.metrics)
    metrics.instrument_storage(store.storage)
    dispatcher = HookDispatcher.from_config(config, hooks, metrics)
    index = FileIndex(store)
    tus_observer = TusObserver(metrics, dispatcher, store)
    tus = _tus_app(store, config, index, tus_observer)
    if tus is not None:
        tus_observer.count_sweeps(tus)
    middleware = [
        Middleware(AccessLogMiddleware, metrics=metrics),
        Middleware(_CatchAll),
        Middleware(
            OriginGuardMiddleware,
            allowed_hosts=config.allowed_hosts or default_allowed_hosts(config.host),
            cors_origins=config.cors_origins,
        ),
    ]
    if config.token:
        middleware.append(Middleware(BearerAuthMiddleware, token=config.token))

    sweeper = LeftoverSweeper(
        store.storage,
        tus=tus.store if tus is not None else None,
        orphan_age=(tus.protocol.expiry if tus is not None else None) or 24 * 3600.0,
        interval=config.sweep_interval,
        # Longer than a tus lease: renewed by one thread, never on the request path.
        write_lease=10 * config.lease,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.start()
        sweeper.start()
        stop_metrics = None
        if config.metrics and config.metrics_port is not None:
            stop_metrics = metrics.serve(config.host, config.metrics_port)
        try:
            yield
        finally:
            await sweeper.aclose()
            if tus is not None:
                await tus.aclose()
            await dispatcher.aclose()
            if stop_metrics is not None:
                await asyncio.to_thread(stop_metrics)
            await store.stop()

    tus_routes = [Mount("/tus", app=tus_observer.wrap(cast("ASGIApp", tus)))] if tus else []
    app = Starlette(
        routes=_routes([*tus_routes, *extra_routes], config),
        middleware=middleware,
        exception_handlers={
            UploadError: _upload_error,
            HTTPException: _http_error,
            StorageError: _storage_error,
        },
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.store = store
    app.state.storage_probe = StorageProbe(store.check)
    app.state.metrics = metrics
    app.state.hooks = dispatcher
    app.state.file_index = index
    app.state.link_signer = LinkSigner.from_config(config)
    return app
