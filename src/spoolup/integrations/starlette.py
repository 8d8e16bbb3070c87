"""Read a Starlette (or FastAPI) request with spoolup instead of ``request.form()``.

::

    from spoolup.integrations.starlette import parse_form

    async def upload(request):
        async with await parse_form(request, limits=Limits(max_file_size=2_000_000)) as form:
            ...

The body must not have been read before (by ``request.form()``, ``request.body()`` or
``request.stream()``): spoolup reads it from the ASGI ``receive`` channel itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request

from spoolup import asgi
from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.limits import Limits

__all__ = ["parse_form", "receive_file"]


async def parse_form(
    request: Request,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> Form:
    """The request's form, as :func:`spoolup.asgi.parse_form` reads it."""
    return await asgi.parse_form(request.scope, request.receive, limits=limits, handlers=handlers)


async def receive_file(
    request: Request,
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> UploadedFile | None:
    """The request's raw body as one file, as :func:`spoolup.asgi.receive_file` reads it."""
    return await asgi.receive_file(
        request.scope,
        request.receive,
        filename=filename,
        content_type=content_type,
        limits=limits,
        handlers=handlers,
    )
