"""Read a Starlette (or FastAPI) request with spoolup instead of ``request.form()``.

::

    from spoolup.integrations.starlette import install, parse_form

    async def upload(request):
        async with await parse_form(request, limits=Limits(max_file_size=2_000_000)) as form:
            ...

    app = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
    install(app)  # every UploadError answers JSON {"error": ...} with its status

The body is read from the ASGI ``receive`` channel itself, so nothing may have read it
before: a body already read (``request.form()``, ``request.body()``,
``request.stream()``, a FastAPI ``Form()`` or ``File()`` parameter) is a
``RuntimeError`` naming the reader, raised at once instead of waiting on ``receive``.
Starlette's own ``max_body_size`` (of the app, a ``Route`` or a FastAPI route) lowers
``Limits.max_body_size`` for the request, so a declared length over it is a 413 before
a byte is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spoolup import asgi
from spoolup.errors import UploadError
from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.limits import Limits

__all__ = [
    "install",
    "parse_form",
    "receive_file",
    "request_limits",
    "upload_error_response",
]

# Starlette's RequestBodyLimitMiddleware keeps the limit in force for a request here
# (starlette.middleware.body_limit.MAX_BODY_SIZE_SCOPE_KEY, Starlette >= 1.0).
_MAX_BODY_SIZE_KEY = "starlette.max_body_size"
# Set by the middleware install() adds: body bytes received so far, by anyone.
_RECEIVED_KEY = "spoolup.body_received"


def request_limits(scope: Scope, limits: Limits | None) -> Limits:
    """``limits`` (or the defaults) lowered to the framework's ``max_body_size``, if any."""
    limits = Limits() if limits is None else limits
    framework = scope.get(_MAX_BODY_SIZE_KEY)
    if isinstance(framework, int) and framework < limits.max_body_size:
        return dataclasses.replace(limits, max_body_size=framework)
    return limits


def _check_unread(request: Request) -> None:
    """Raise ``RuntimeError`` if anything read the request's body already.

    Reading ``receive`` again after the body ended would wait for the client to
    disconnect; reading after part of it would see a body without its start.
    """
    reader = None
    if request._form is not None:
        reader = "request.form() (a FastAPI Form() or File() parameter calls it)"
    elif hasattr(request, "_body"):
        reader = "request.body() (or .json())"
    elif request._stream_consumed:
        reader = "request.stream()"
    elif request.scope.get(_RECEIVED_KEY):
        reader = "something before spoolup (a middleware or another Request object)"
    if reader is not None:
        raise RuntimeError(
            f"the request body was already read by {reader}; spoolup reads the body "
            "itself, so nothing may read it before (remove that reader, or use its result "
            "instead of spoolup)"
        )


async def parse_form(
    request: Request,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> Form:
    """The request's form, as :func:`spoolup.asgi.parse_form` reads it."""
    _check_unread(request)
    return await asgi.parse_form(
        request.scope,
        request.receive,
        limits=request_limits(request.scope, limits),
        handlers=handlers,
    )


async def receive_file(
    request: Request,
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> UploadedFile | None:
    """The request's raw body as one file, as :func:`spoolup.asgi.receive_file` reads it."""
    _check_unread(request)
    return await asgi.receive_file(
        request.scope,
        request.receive,
        filename=filename,
        content_type=content_type,
        limits=request_limits(request.scope, limits),
        handlers=handlers,
    )


async def upload_error_response(request: Request, exc: Exception) -> Response:
    """An :class:`~spoolup.UploadError` as JSON ``{"error": message}`` with its status."""
    assert isinstance(exc, UploadError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


class _BodyWatch:
    """Counts the body bytes received in the scope, so a reader before spoolup is seen."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[_RECEIVED_KEY] = 0

        async def watched() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                # One more than the bytes: an empty first message counts as a read too.
                scope[_RECEIVED_KEY] += len(message.get("body", b"")) + 1
            return message

        await self.app(scope, watched, send)


def install(app: Any) -> None:
    """Answer every :class:`~spoolup.UploadError` with JSON ``{"error": ...}`` and its status.

    For a Starlette or FastAPI app, before it starts, after its middleware is added.
    FastAPI's own validation errors keep their 422. It also lets spoolup see a body read
    by that middleware or another ``Request``, and, for FastAPI, documents the request
    body of every route that takes :func:`spoolup.integrations.fastapi.form` or
    ``upload_file`` in the OpenAPI schema.
    """
    app.add_exception_handler(UploadError, upload_error_response)
    # Outermost of the middleware added so far: it sees a body they read.
    app.add_middleware(_BodyWatch)
    if hasattr(app, "openapi") and hasattr(app, "openapi_schema"):
        from spoolup.integrations.fastapi import document

        document(app)
