"""Read a Flask (or any Werkzeug) request with spoolup instead of ``request.files``.

::

    from spoolup.integrations.flask import parse_form

    @app.post("/upload")
    def upload():
        with parse_form(request, limits=Limits(max_file_size=2_000_000)) as form:
            ...

The body must not have been read before (by ``request.form``, ``request.files``,
``request.data`` or ``request.get_data()``): spoolup reads it from ``wsgi.input``.
"""

from __future__ import annotations

from collections.abc import Iterable

from werkzeug.wrappers import Request

from spoolup import wsgi
from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.limits import Limits

__all__ = ["parse_form", "receive_file"]


def parse_form(
    request: Request,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> Form:
    """The request's form, as :func:`spoolup.wsgi.parse_form` reads it."""
    return wsgi.parse_form(request.environ, limits=limits, handlers=handlers)


def receive_file(
    request: Request,
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> UploadedFile | None:
    """The request's raw body as one file, as :func:`spoolup.wsgi.receive_file` reads it."""
    return wsgi.receive_file(
        request.environ,
        filename=filename,
        content_type=content_type,
        limits=limits,
        handlers=handlers,
    )
