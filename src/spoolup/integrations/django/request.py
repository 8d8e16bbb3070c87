"""Reading a Django request's body with spoolup: ``parse_form``, ``receive_file``, ``request.POST``.

Every path goes through spoolup's drivers (:func:`spoolup.parse_form`,
:func:`spoolup.receive_file`): the body is pulled from ``request.read()`` a megabyte
at a time, or taken from ``request.body`` when something already cached it. A body
that something else already consumed is a :class:`RuntimeError` naming the reader,
never a misleading 400 or a hang.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Iterator, Sequence
from types import FrameType
from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict

from spoolup import _io
from spoolup import form as _form
from spoolup.errors import RequestTooLarge, UploadAborted, UploadError
from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.headers import parse_options_header
from spoolup.limits import Limits
from spoolup.multipart import PartData, PartStart
from spoolup.wsgi import content_length

from .config import Options, options_for
from .files import django_file

__all__ = ["UploadRefused", "install", "is_form", "parse_form", "receive_file", "view_of"]

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class UploadRefused(SuspiciousOperation, UploadError):  # type: ignore[misc]
    """A spoolup :class:`~spoolup.UploadError` met while loading ``request.POST``/``FILES``.

    A ``SuspiciousOperation`` for Django, which answers it and logs it on
    ``django.security.UploadRefused`` as it does its own ``RequestDataTooBig``;
    :class:`~spoolup.integrations.django.UploadMiddleware` then gives the answer the
    status the error carries (``.status``: 400, 413 or 415). Also an ``UploadError``,
    so a view may catch it as one. The original error is ``.error``.
    """

    def __init__(self, error: UploadError) -> None:
        UploadError.__init__(self, error.message, status=error.status)
        self.error = error


# -- the body ------------------------------------------------------------------


def _caller() -> str:
    """Where the code that first asked for the body is: the first frame outside us."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith(
            ("spoolup.integrations.django", "django.http", "django.core.handlers")
        ):
            return f"{module}.{frame.f_code.co_name}"
        frame = frame.f_back
    return "unknown code"  # pragma: no cover - there is always a caller


def _consumed_by(request: HttpRequest) -> str:
    """Who read the body of ``request``, in words a developer acts on."""
    first = getattr(request, "_spoolup_reader", None)
    if first is not None:
        return (
            f"spoolup for request.POST/request.FILES, first used by {first}: the files are "
            "in request.FILES (each with its spoolup file at .spoolup), and parse_form(request) "
            "without arguments returns them; give limits and handlers with @upload_options"
        )
    if hasattr(request, "_files"):
        return (
            "Django's own parser, for request.POST or request.FILES (CsrfViewMiddleware reads "
            "them for every POST): put spoolup.integrations.django.UploadMiddleware before "
            "CsrfViewMiddleware in MIDDLEWARE so that they are spoolup's"
        )
    return "request.read() or request.readline() (a stream read without caching it)"


def _chunks(request: HttpRequest, length: int | None) -> Iterator[bytes]:
    # Django raises UnreadablePostError (an OSError) when the client leaves mid-body,
    # and some servers just end the stream early: either way the client's doing, an
    # UploadAborted like in the WSGI driver.
    read = request.read
    received = 0
    while True:
        try:
            chunk = read(_io.READ_SIZE)
        except OSError as exc:
            raise UploadAborted(f"reading the request body failed: {exc}") from exc
        if not chunk:
            if length is not None and received < length:
                raise UploadAborted(
                    f"the body ended after {received} of its declared {length} bytes"
                )
            return
        received += len(chunk)
        yield chunk


def _body(request: HttpRequest) -> tuple[Iterable[bytes] | bytes, int | None]:
    """The body to parse and its declared length; ``RuntimeError`` if already consumed."""
    cached = getattr(request, "_body", None)
    if cached is not None:
        return cached, len(cached)
    if getattr(request, "_read_started", False):
        msg = (
            f"the body of {request.method} {request.path} was already read by "
            f"{_consumed_by(request)}"
        )
        raise RuntimeError(msg)
    request._spoolup_reader = _caller()
    length = content_length(request.META)
    return _chunks(request, length), length


# -- forms ---------------------------------------------------------------------


_WHOLE_FIELD = 3  # a field in one chunk comes as (name, body, charset) (feed_fields)


class _FormMemory:
    """The multipart parser, also counting the bytes of all non-file values together.

    Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bounds the non-file data of a whole form;
    spoolup's ``max_field_size`` bounds one value. A 413 the moment the sum crosses.
    """

    __slots__ = ("_in_field", "_limit", "_parser", "_total")

    def __init__(self, parser: _form._Parser, limit: int) -> None:
        self._parser = parser
        self._limit = limit
        self._total = 0
        self._in_field = False

    def _count(self, events: Sequence[Any]) -> None:
        for event in events:
            if type(event) is PartData:
                if self._in_field:
                    self._add(len(event.data))
            elif type(event) is PartStart:
                self._in_field = event.filename is None
            elif type(event) is tuple and len(event) == _WHOLE_FIELD:  # (name, body, charset)
                self._add(len(event[1]))

    def _add(self, size: int) -> None:
        self._total += size
        if self._total > self._limit:
            raise RequestTooLarge.for_limit(
                "DATA_UPLOAD_MAX_MEMORY_SIZE", self._limit, "the form's non-file data"
            )

    def feed(self, data: bytes) -> Sequence[Any]:
        events = self._parser.feed(data)
        self._count(events)
        return events

    def close(self) -> None:
        self._parser.close()


def _parse(  # noqa: PLR0917
    body: Iterable[bytes] | bytes,
    content_type: str,
    length: int | None,
    limits: Limits,
    handlers: Iterable[HandlerSpec],
    form_memory: int | None,
) -> Form:
    """:func:`spoolup.parse_form`, with Django's bound on a form's non-file data."""
    mime = parse_options_header(content_type)[0]
    if form_memory is None:
        return _form.parse_form(
            body, content_type, limits=limits, handlers=handlers, content_length=length
        )
    if mime == "application/x-www-form-urlencoded":
        # Django's meaning: the whole urlencoded body is non-file data.
        if form_memory < limits.max_body_size:
            limits = Limits(**{**_limits_dict(limits), "max_body_size": form_memory})
        return _form.parse_form(
            body, content_type, limits=limits, handlers=handlers, content_length=length
        )
    receiver = _form._form_receiver(content_type, limits, handlers, length)
    if mime == "multipart/form-data":
        receiver._parser = _FormMemory(receiver._parser, form_memory)
    return _form._run(receiver, body)


def _limits_dict(limits: Limits) -> dict[str, int]:
    return {name: getattr(limits, name) for name in limits.__dataclass_fields__}


def view_of(request: HttpRequest) -> object:
    """The view ``request`` goes to (resolved now if Django has not yet), or ``None``."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        from django.urls import Resolver404, resolve

        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return None
    return match.func


def _options(
    request: HttpRequest, limits: Limits | None, handlers: Iterable[HandlerSpec] | None
) -> Options:
    options = options_for(view_of(request))
    if limits is not None:
        options = Options(limits, options.handlers, None)
    if handlers is not None:
        options = Options(options.limits, tuple(handlers), options.form_memory)
    return options


def parse_form(
    request: HttpRequest,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> Form:
    """The request's form as a spoolup :class:`~spoolup.Form` (close it, or use ``with``).

    ``limits`` and ``handlers`` default to the view's :func:`upload_options`, else the
    settings (``SPOOLUP`` and Django's ``DATA_UPLOAD_*``/``FILE_UPLOAD_*``). When
    ``UploadMiddleware`` already parsed the body for ``request.POST`` (as it does for
    ``CsrfViewMiddleware``), that form is returned: the same files as ``request.FILES``.

    Raises an :class:`~spoolup.UploadError` for bad input (``UploadMiddleware`` answers
    it with its status), and :class:`RuntimeError` naming the reader if the body was
    already consumed otherwise (Django's parser, ``request.read()``), or if ``limits``
    or ``handlers`` are given for a body already parsed.
    """
    parsed: Form | None = getattr(request, "_spoolup_form", None)
    if parsed is not None and limits is None and handlers is None:
        return parsed  # request.POST/FILES were loaded by UploadMiddleware: the same form
    options = _options(request, limits, handlers)
    body, length = _body(request)
    return _parse(
        body,
        str(request.META.get("CONTENT_TYPE") or ""),
        length,
        options.limits,
        options.handlers,
        options.form_memory,
    )


def receive_file(
    request: HttpRequest,
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> UploadedFile | None:
    """The raw body as one spoolup file (see :func:`spoolup.receive_file`).

    Same defaults and errors as :func:`parse_form`; ``content_type`` defaults to the
    request's ``Content-Type``.
    """
    options = _options(request, limits, handlers)
    body, length = _body(request)
    declared = request.META.get("CONTENT_TYPE") or None
    return _form.receive_file(
        body,
        filename=filename,
        content_type=content_type if content_type is not None else declared,
        limits=options.limits,
        handlers=options.handlers,
        content_length=length,
    )


# -- request.POST and request.FILES ----------------------------------------------


def is_form(request: HttpRequest) -> bool:
    """True for a POST whose body is a form Django would parse into ``request.POST``."""
    return request.method == "POST" and getattr(request, "content_type", None) in _FORM_TYPES


def _load(request: HttpRequest) -> None:
    """``request._load_post_and_files`` for a request that :func:`install` prepared."""
    error: UploadRefused | None = getattr(request, "_spoolup_error", None)
    if error is not None:
        # Raised once through Django's response path; after that (an error page that
        # shows request.POST), empty like Django after its own parse errors.
        if getattr(request, "_spoolup_reported", False):
            request._mark_post_parse_error()
            return
        request._spoolup_reported = True
        raise error
    if not is_form(request) or (
        getattr(request, "_read_started", False) and not hasattr(request, "_body")
    ):
        # Not a form, or a stream read by the view: Django's behaviour (empty).
        type(request)._load_post_and_files(request)
        return
    try:
        form = parse_form(request)
    except UploadError as exc:
        refused = UploadRefused(exc)
        request._spoolup_error = refused
        request._spoolup_reported = True
        raise refused from exc
    post = QueryDict(mutable=True, encoding=request.encoding)
    for name, value in form.fields.multi_items():
        post.appendlist(name, value)
    post._mutable = False
    files: MultiValueDict[str, Any] = MultiValueDict()
    for name, file in form.files.multi_items():
        files.appendlist(name, django_file(file))
    request._post = post
    request._files = files
    request._spoolup_form = form


def install(request: HttpRequest) -> None:
    """Make ``request.POST`` and ``request.FILES`` spoolup's, loaded on first use."""
    request._load_post_and_files = functools.partial(_load, request)
