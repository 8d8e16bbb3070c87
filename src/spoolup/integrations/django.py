"""Read a Django request with spoolup instead of ``request.FILES``.

::

    from spoolup.integrations.django import parse_form

    def upload(request):
        with parse_form(request, limits=Limits(max_file_size=2_000_000)) as form:
            ...

Works under WSGI and ASGI: the body is read through ``request.read()``, so it must not
have been read before (``request.POST``, ``request.FILES`` or ``request.body``).
Django's own ``DATA_UPLOAD_MAX_*`` settings do not apply; spoolup's ``Limits`` do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.http import HttpRequest

from spoolup import _io
from spoolup import form as _form
from spoolup.errors import UploadAborted
from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.limits import Limits
from spoolup.wsgi import content_length

__all__ = ["parse_form", "receive_file"]


def _body(request: HttpRequest) -> Iterator[bytes]:
    # Django raises UnreadablePostError (an OSError) when the client leaves mid-body:
    # that is the client's doing, an UploadAborted like in the WSGI driver.
    while True:
        try:
            chunk = request.read(_io.READ_SIZE)
        except OSError as exc:
            raise UploadAborted(f"reading the request body failed: {exc}") from exc
        if not chunk:
            return
        yield chunk


def parse_form(
    request: HttpRequest,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> Form:
    """The request's form, as :func:`spoolup.parse_form` reads it."""
    return _form.parse_form(
        _body(request),
        str(request.META.get("CONTENT_TYPE") or ""),
        limits=limits,
        handlers=handlers,
        content_length=content_length(request.META),
    )


def receive_file(
    request: HttpRequest,
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> UploadedFile | None:
    """The request's raw body as one file, as :func:`spoolup.receive_file` reads it."""
    declared = request.META.get("CONTENT_TYPE") or None
    return _form.receive_file(
        _body(request),
        filename=filename,
        content_type=content_type if content_type is not None else declared,
        limits=limits,
        handlers=handlers,
        content_length=content_length(request.META),
    )
