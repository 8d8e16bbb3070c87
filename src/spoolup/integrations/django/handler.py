"""``SpoolupUploadHandler``: spoolup's handler chain under Django's own multipart parser.

For projects that keep Django's parser (no ``UploadMiddleware``)::

    FILE_UPLOAD_HANDLERS = ["spoolup.integrations.django.SpoolupUploadHandler"]
    SPOOLUP = {"HANDLERS": ["spoolup.handlers.HashingHandler",
                            "spoolup.handlers.SpooledFileHandler"]}

Django's parser finds the parts; each file part goes through the spoolup chain of
``SPOOLUP["HANDLERS"]`` (the same :class:`spoolup.form.Receiver` every driver uses,
with ``StopFutureHandlers``, ``SkipFile`` and ``StopUpload``), and ``request.FILES``
holds Django file types with ``.spoolup``. Django's ``DATA_UPLOAD_*`` limits are
Django's parser's to enforce; ``SPOOLUP["LIMITS"]`` adds ``max_file_size`` and
``max_body_size`` (counted over file data).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files import uploadhandler as django_uploadhandler
from django.http import HttpRequest
from django.utils.module_loading import import_string

from spoolup.errors import FileTooLarge, UploadError
from spoolup.form import Receiver
from spoolup.handlers import UploadHandler, resolve_handlers
from spoolup.headers import safe_filename
from spoolup.multipart import PartData, PartEnd, PartStart

from .config import settings_options
from .files import django_file

__all__ = ["SpoolupUploadHandler", "check_file_upload_handlers"]

_ADAPTER = "spoolup.integrations.django.SpoolupUploadHandler"


def check_file_upload_handlers(handlers: list[Any] | None = None) -> None:
    """Refuse a spoolup handler in ``FILE_UPLOAD_HANDLERS``, naming the adapter to use.

    Django's parser would fail at the first upload with an ``AttributeError``; this
    runs at start-up (``UploadMiddleware``, ``get_asgi_application``, the adapter).
    """
    for entry in settings.FILE_UPLOAD_HANDLERS if handlers is None else handlers:
        obj = import_string(entry) if isinstance(entry, str) else entry
        if isinstance(obj, UploadHandler) or (
            isinstance(obj, type) and issubclass(obj, UploadHandler)
        ):
            msg = (
                f"FILE_UPLOAD_HANDLERS holds {entry!r}, a spoolup handler, which Django's "
                f"parser cannot drive: put {_ADAPTER!r} in FILE_UPLOAD_HANDLERS and the "
                'spoolup handlers in SPOOLUP["HANDLERS"], or add '
                "spoolup.integrations.django.UploadMiddleware to MIDDLEWARE"
            )
            raise ImproperlyConfigured(msg)


class _Events:
    """The parser the receiver is given: it returns the events Django's parser found."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[PartStart | PartData | PartEnd] = []

    def feed(self, data: bytes) -> list[PartStart | PartData | PartEnd]:
        events, self.events = self.events, []
        return events

    def close(self) -> list[PartStart | PartData | PartEnd]:
        return self.feed(b"")


class SpoolupUploadHandler(django_uploadhandler.FileUploadHandler):  # type: ignore[misc]
    """A Django upload handler that runs the spoolup chain of ``SPOOLUP["HANDLERS"]``.

    Takes every file (the Django handlers after it see none); a refused file (a
    limit, a type check) stops the upload with the spoolup error, which
    ``UploadMiddleware`` answers with its status and Django otherwise answers as a 400.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        check_file_upload_handlers()
        self._events = _Events()
        self._receiver: Receiver | None = None
        self._file_bytes = 0
        self._max_file = 0

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],  # noqa: N803 - Django's name
        content_length: int,
        boundary: bytes,
        encoding: str | None = None,
    ) -> None:
        """Start the spoolup chain for this request; Django's parser does the parsing."""
        options = settings_options()
        self._max_file = options.limits.max_file_size
        self._receiver = Receiver(
            self._events,
            resolve_handlers(options.handlers),
            limits=options.limits,
            content_length=None,  # only file data is fed, not the whole body
            content_type=META.get("CONTENT_TYPE"),
        )

    def _push(self, event: PartStart | PartData | PartEnd, data: bytes = b"") -> None:
        assert self._receiver is not None
        self._events.events.append(event)
        try:
            self._receiver.feed(data)
        except UploadError as exc:
            self._refuse(exc)

    def _refuse(self, error: UploadError) -> None:
        # Django's parser lets the exception through without telling its handlers:
        # the chain is interrupted here (temp files and stored objects released).
        from .request import UploadRefused

        assert self._receiver is not None
        self._receiver.abort()
        refused = UploadRefused(error)
        if self.request is not None:
            self.request._spoolup_error = refused
            self.request._spoolup_reported = True
        raise refused from error

    def new_file(  # noqa: PLR0917 - Django's signature
        self,
        field_name: str,
        file_name: str,
        content_type: str,
        content_length: int | None,
        charset: str | None = None,
        content_type_extra: dict[str, Any] | None = None,
    ) -> None:
        """A file part begins: the spoolup chain hears of it; Django's handlers after do not."""
        super().new_file(
            field_name, file_name, content_type, content_length, charset, content_type_extra
        )
        self._file_bytes = 0
        headers = (("content-type", content_type),) if content_type else ()
        start = PartStart(
            field_name,
            safe_filename(file_name),
            file_name,
            content_type or None,
            charset,
            headers,
        )
        self._push(start)
        raise django_uploadhandler.StopFutureHandlers

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        """Feed the chunk to the spoolup chain, which keeps it."""
        self._file_bytes += len(raw_data)
        if self._file_bytes > self._max_file:
            self._refuse(FileTooLarge.for_limit("max_file_size", self._max_file, "file"))
        self._push(PartData(raw_data), raw_data)

    def file_complete(self, file_size: int) -> Any:
        """The file the spoolup chain kept, as a Django file type (``None`` if none)."""
        assert self._receiver is not None
        before = len(self._receiver.files.multi_items())
        self._push(PartEnd())
        received = self._receiver.files.multi_items()
        if len(received) == before:
            return None
        return django_file(received[-1][1])

    def upload_complete(self) -> None:
        """The body was parsed: the spoolup chain completes."""
        if self._receiver is not None:
            self._receiver.finish()

    def upload_interrupted(self) -> None:
        """The upload failed: the spoolup chain releases what it holds."""
        if self._receiver is not None:
            self._receiver.abort()
