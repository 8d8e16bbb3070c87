"""``get_asgi_application()``: Django's ASGI handler, with the body streamed instead of spooled.

Django's own handler receives the whole body into a temp file before the view runs:
a large upload is written twice (the spool, then the upload handler's file) and a
413 comes only after the last byte. This one hands the request a stream that
receives the body while the parser reads it, so each byte of a large file is
written once and a declared ``Content-Length`` over the limit is refused before
the body is received. In ``asgi.py``::

    from spoolup.integrations.django import get_asgi_application

    application = get_asgi_application()

Sync views (and sync middleware) read the stream from their worker thread. An async
view cannot block on it; for those the body is made ready before the view runs:
with ``UploadMiddleware``, a form's ``request.POST``/``FILES`` are parsed (streamed,
in a worker thread); anything else is spooled as Django does. Memory per request
stays about two batches of :data:`BATCH_SIZE` (one being read, one received ahead).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
import threading
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import IO, Any

import django
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse, UnreadablePostError

from .handler import check_file_upload_handlers
from .request import UploadRefused, install, is_form, view_of

__all__ = ["BATCH_SIZE", "SpoolupASGIHandler", "get_asgi_application"]

BATCH_SIZE = 1024 * 1024
"""Bytes of body received per hop from the event loop to the reading thread."""

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

_MIDDLEWARE = "spoolup.integrations.django.UploadMiddleware"


class StreamingBody:
    """The request's body stream: receives ASGI messages as the request reads it.

    ``read``/``readline`` block the calling (worker) thread while a batch is received
    on the event loop, with one batch received ahead. Read from the event loop's own
    thread it raises ``RuntimeError`` (it would wait on itself). A client leaving
    mid-body is an ``UnreadablePostError``, as in Django.
    """

    def __init__(self, receive: Receive, loop: asyncio.AbstractEventLoop) -> None:
        self.receive = receive
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._chunks: deque[bytes] = deque()
        self._more = True
        self._started = False
        self._next: concurrent.futures.Future[list[bytes]] | None = None
        self._received = asyncio.Event()
        self._file: IO[bytes] | None = None

    @property
    def untouched(self) -> bool:
        """True while nothing of the body was received."""
        return not self._started

    async def received(self) -> None:
        """Wait until the whole body was received (or the client left)."""
        await self._received.wait()

    async def _gather(self) -> list[bytes]:
        chunks: list[bytes] = []
        size = 0
        while size < BATCH_SIZE:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self._more = False
                self._received.set()
                raise UnreadablePostError("the client disconnected before the body was complete")
            body = message.get("body", b"")
            if body:
                chunks.append(bytes(body))
                size += len(body)
            if not message.get("more_body", False):
                self._more = False
                self._received.set()
                break
        return chunks

    @property
    def _exhausted(self) -> bool:
        # _more turns False in the batch received ahead: its chunks still wait in _next.
        return not self._more and self._next is None

    def _fetch(self) -> None:
        if threading.get_ident() == self._loop_thread:
            msg = (
                "the request body is streamed (spoolup's get_asgi_application) and cannot be "
                "read on the event loop; read it in a sync view or through "
                "asgiref.sync.sync_to_async, or add spoolup.integrations.django.UploadMiddleware "
                "so that request.POST and request.FILES are ready before an async view runs"
            )
            raise RuntimeError(msg)
        self._started = True
        future = self._next
        if future is None:
            future = asyncio.run_coroutine_threadsafe(self._gather(), self._loop)
        self._next = None
        chunks = future.result()
        if self._more:
            self._next = asyncio.run_coroutine_threadsafe(self._gather(), self._loop)
        self._chunks.extend(chunks)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all of the rest if negative); ``b""`` at the end."""
        if self._file is not None:
            return self._file.read(-1 if size is None else size)
        if size is None or size < 0:
            while not self._exhausted:
                self._fetch()
            data = b"".join(self._chunks)
            self._chunks.clear()
            return data
        while not self._chunks and not self._exhausted:
            self._fetch()
        out: list[bytes] = []
        wanted = size
        chunks = self._chunks
        while chunks and wanted > 0:
            chunk = chunks[0]
            if len(chunk) <= wanted:
                out.append(chunks.popleft())
                wanted -= len(chunk)
            else:
                out.append(chunk[:wanted])
                chunks[0] = chunk[wanted:]
                wanted = 0
        return out[0] if len(out) == 1 else b"".join(out)

    def readline(self, size: int | None = -1) -> bytes:
        """One line (up to ``size`` bytes), with its ``\\n``."""
        if self._file is not None:
            return self._file.readline(-1 if size is None else size)
        limit = -1 if size is None else size
        out = bytearray()
        while limit < 0 or len(out) < limit:
            if not self._chunks:
                if self._exhausted:
                    break
                self._fetch()
                continue
            chunk = self._chunks[0]
            stop = len(chunk) if limit < 0 else min(len(chunk), limit - len(out))
            newline = chunk.find(b"\n", 0, stop)
            end = stop if newline < 0 else newline + 1
            out += chunk[:end]
            if end == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[end:]
            if newline >= 0:
                break
        return bytes(out)

    async def spool(self) -> None:
        """Receive the rest of the body into a temp file now, as Django's handler does."""
        spooled = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - kept as the request's stream
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        )
        try:
            for chunk in self._chunks:
                spooled.write(chunk)
            self._chunks.clear()
            if self._next is not None:
                pending, self._next = self._next, None
                for chunk in await asyncio.wrap_future(pending):
                    spooled.write(chunk)
            while self._more:
                for chunk in await self._gather():
                    spooled.write(chunk)
        except UnreadablePostError:
            spooled.close()
            raise RequestAborted from None
        spooled.seek(0)
        self._file = spooled

    def close(self) -> None:
        """Stop receiving ahead and drop what is held."""
        pending, self._next = self._next, None
        if pending is not None:
            pending.cancel()
        self._chunks.clear()
        if self._file is not None:
            self._file.close()


class _Receive:
    """What Django's handler is given as ``receive``: the body stream rides along."""

    __slots__ = ("body",)

    def __init__(self, body: StreamingBody) -> None:
        self.body = body

    async def __call__(self) -> Message:
        await self.body.received()
        return await self.body.receive()


class SpoolupASGIHandler(ASGIHandler):  # type: ignore[misc]
    """Django's ``ASGIHandler`` whose requests stream their body (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        check_file_upload_handlers()
        self._spoolup_forms = any(
            entry == _MIDDLEWARE
            or (entry.endswith(".UploadMiddleware") and entry.startswith("spoolup."))
            for entry in settings.MIDDLEWARE
        )

    async def handle(self, scope: Message, receive: Receive, send: Any) -> None:
        """Django's handling, with a body that streams (never received up front)."""
        body = StreamingBody(receive, asyncio.get_running_loop())
        try:
            await super().handle(scope, _Receive(body), send)
        finally:
            body.close()

    async def read_body(self, receive: _Receive) -> StreamingBody:
        """Nothing is received here: the request reads the stream as it parses."""
        return receive.body

    async def listen_for_disconnect(self, receive: _Receive) -> None:
        """Django's disconnect watch, once the body was received (one reader at a time)."""
        await receive.body.received()
        await super().listen_for_disconnect(receive.body.receive)

    async def run_get_response(self, request: HttpRequest) -> HttpResponse:
        """Make the body ready for an async view, then Django's response."""
        body = getattr(request, "_stream", None)
        if isinstance(body, StreamingBody) and body.untouched:
            view = view_of(request)
            if view is not None and iscoroutinefunction(view):
                await self._ready_for_async(request, body)
        response: HttpResponse = await super().run_get_response(request)
        return response

    async def _ready_for_async(self, request: HttpRequest, body: StreamingBody) -> None:
        if self._spoolup_forms and is_form(request):
            install(request)
            try:
                await sync_to_async(_load, thread_sensitive=True)(request)
            except UploadRefused:
                # Raised again at the first use of request.POST or FILES, inside the
                # middleware chain, so Django and UploadMiddleware answer it.
                request._spoolup_reported = False
        else:
            await body.spool()


def _load(request: HttpRequest) -> None:
    request._load_post_and_files()


def get_asgi_application() -> ASGIHandler:
    """A drop-in for ``django.core.asgi.get_asgi_application`` that streams request bodies."""
    django.setup(set_prefix=False)
    return SpoolupASGIHandler()
