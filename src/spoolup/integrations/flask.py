"""Flask's ``request.form`` and ``request.files``, filled by spoolup.

::

    from flask import Flask, request
    from spoolup.integrations.flask import Spoolup

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024**3
    Spoolup(app)  # or spoolup = Spoolup(); spoolup.init_app(app)

    @app.post("/upload")
    def upload():
        file = request.files["backup"]  # a Werkzeug FileStorage
        file.save("/srv/backups/" + file.filename)  # a rename: no second copy
        return {"sha256": file.spoolup.hashes.get("sha256")}

The extension gives the app a request class whose form data spoolup parses, lazily, on
first access, through :func:`spoolup.wsgi.parse_form` and the handler chain; views do
not change. Each file is a :class:`SpoolupFileStorage` (a ``FileStorage``: ``stream``,
``filename``, ``mimetype``, ``content_length``, ``save(path or file)``) with the
spoolup file at ``.spoolup``; ``filename`` is spoolup's safe base name (the name as
sent is ``.spoolup.raw_filename``). Flask's limits apply, per request as Flask 3.1
allows: ``MAX_CONTENT_LENGTH`` (``request.max_content_length``) bounds the body,
``MAX_FORM_MEMORY_SIZE`` one text value, ``MAX_FORM_PARTS`` the parts; a declared
length over the limit is a 413 before the body is read. An ``UploadError`` answers
with its status through Flask's error handling (an ``@app.errorhandler(413)`` sees it).
Files are closed and temp files removed when the request ends.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar

from flask import Flask, current_app
from flask import Request as FlaskRequest
from werkzeug.datastructures import FileStorage, Headers
from werkzeug.exceptions import HTTPException, default_exceptions
from werkzeug.wrappers import Request

from spoolup import form as _form
from spoolup import wsgi
from spoolup.errors import TooManyParts, UploadError
from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.limits import Limits

__all__ = [
    "Spoolup",
    "SpoolupFileStorage",
    "parse_form",
    "receive_file",
    "upload_options",
]

F = TypeVar("F", bound=Callable[..., Any])

_FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


@dataclasses.dataclass(frozen=True)
class _Options:
    limits: Limits | None
    handlers: list[HandlerSpec] | None


class SpoolupFileStorage(FileStorage):
    """A Werkzeug ``FileStorage`` over a spoolup :class:`~spoolup.UploadedFile`.

    ``stream`` is the file's data (in memory or a temp file), ``content_length`` its
    size; ``save(path)`` moves a temp file into place by rename (see
    :meth:`UploadedFile.save`), ``save(file_object)`` copies. The spoolup file is
    ``.spoolup``.
    """

    def __init__(self, file: UploadedFile) -> None:
        super().__init__(
            stream=file.file,
            filename=file.filename,
            name=file.field_name,
            headers=Headers(list(file.headers)),
        )
        self.spoolup = file

    @property
    def content_length(self) -> int:
        """The file's size in bytes."""
        return self.spoolup.size

    def save(self, dst: str | os.PathLike[str] | IO[bytes], buffer_size: int = 16384) -> None:
        """Save to a path (atomically, by rename when the file is on disk) or a file object."""
        if isinstance(dst, (str, os.PathLike)):
            self.spoolup.save(dst)
        else:
            super().save(dst, buffer_size)

    def close(self) -> None:
        """Close the spoolup file (a temp file is removed)."""
        self.spoolup.close()


def _limits(request: FlaskRequest, base: Limits | None) -> Limits:
    limits = Limits() if base is None else base
    changes: dict[str, int] = {}
    if request.max_content_length is not None:
        changes["max_body_size"] = request.max_content_length
    if request.max_form_memory_size is not None:
        changes["max_field_size"] = request.max_form_memory_size
    if request.max_form_parts is not None:
        changes["max_files"] = min(limits.max_files, request.max_form_parts)
        changes["max_fields"] = min(limits.max_fields, request.max_form_parts)
    return dataclasses.replace(limits, **changes) if changes else limits


class _SpoolupRequestMixin:
    """Request methods that make spoolup parse the form data (mixed into the app's class)."""

    def _load_form_data(self) -> None:
        request: Any = self
        state = request.__dict__
        if "form" in state:
            return
        if "_spoolup_error" in state:
            raise state["_spoolup_error"]
        if request.mimetype not in _FORM_TYPES or not current_app:
            super()._load_form_data()  # type: ignore[misc]
            return
        try:
            parsed = _parse(request)
        except UploadError as exc:
            # Later accesses raise the same error rather than read a half-read body.
            state["_spoolup_error"] = exc
            raise
        state["_spoolup_form"] = parsed
        state["stream"] = io.BytesIO()
        state["form"] = request.parameter_storage_class(parsed.fields.multi_items())
        state["files"] = request.parameter_storage_class(
            (name, SpoolupFileStorage(file)) for name, file in parsed.files.multi_items()
        )

    def close(self) -> None:
        """Close the request: every file and the spoolup form (temp files removed)."""
        super().close()  # type: ignore[misc]
        parsed = self.__dict__.get("_spoolup_form")
        if parsed is not None:
            parsed.close()


def _parse(request: Any) -> Form:
    extension: Spoolup = current_app.extensions["spoolup"]
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    options: _Options | None = getattr(view, "_spoolup_options", None)
    limits = _limits(request, options.limits if options and options.limits else extension.limits)
    handlers = options.handlers if options and options.handlers else extension.handlers
    cached = getattr(request, "_cached_data", None)
    if cached is not None:
        # request.get_data() read the body into memory first: parse those bytes.
        parsed = _form.parse_form(
            cached,
            request.content_type or "",
            limits=limits,
            handlers=handlers,
            content_length=len(cached),
        )
    else:
        stream = request.__dict__.get("stream")
        if stream is not None and getattr(stream, "_pos", None):
            raise RuntimeError(
                "the request body was already read from request.stream; spoolup reads "
                "the body itself, so nothing may read it before request.form or request.files"
            )
        parsed = wsgi.parse_form(request.environ, limits=limits, handlers=handlers)
    parts = len(parsed.fields.multi_items()) + len(parsed.files.multi_items())
    if request.max_form_parts is not None and parts > request.max_form_parts:
        parsed.close()
        raise TooManyParts.for_limit("MAX_FORM_PARTS", request.max_form_parts, "form parts")
    return parsed


def _upload_error_response(exc: UploadError) -> Any:
    """An UploadError as the Werkzeug HTTP error of its status, through Flask's handlers."""
    http_error: HTTPException = default_exceptions.get(exc.status, default_exceptions[400])(
        description=exc.message
    )
    return current_app.handle_http_exception(http_error)


class Spoolup:
    """The Flask extension: ``request.form``/``request.files`` are parsed by spoolup.

    ``limits`` and ``handlers`` are the defaults for every view (Flask's
    ``MAX_CONTENT_LENGTH``, ``MAX_FORM_MEMORY_SIZE`` and ``MAX_FORM_PARTS`` override
    the matching limits); :func:`upload_options` sets them for one view.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        limits: Limits | None = None,
        handlers: Iterable[HandlerSpec] | None = None,
    ) -> None:
        self.limits = limits
        self.handlers = None if handlers is None else list(handlers)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install on ``app``: its request class parses forms with spoolup."""
        app.extensions["spoolup"] = self
        if not issubclass(app.request_class, _SpoolupRequestMixin):
            base = app.request_class
            app.request_class = type(f"Spoolup{base.__name__}", (_SpoolupRequestMixin, base), {})
        app.register_error_handler(UploadError, _upload_error_response)


def upload_options(
    *, limits: Limits | None = None, handlers: Iterable[HandlerSpec] | None = None
) -> Callable[[F], F]:
    """A view decorator: spoolup ``limits`` and ``handlers`` for that view only.

    Flask's own limit settings (and their per-request overrides) still apply on top.
    """
    options = _Options(limits, None if handlers is None else list(handlers))

    def decorate(view: F) -> F:
        view._spoolup_options = options  # type: ignore[attr-defined]
        return view

    return decorate


def parse_form(
    request: Request,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> Form:
    """The request's form as a spoolup :class:`Form`, read by :func:`spoolup.wsgi.parse_form`.

    For views that want spoolup's own objects; the body must not have been read before.
    """
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
