"""The ASGI driver: read a form or a raw file from an ASGI ``http`` request.

::

    async def app(scope, receive, send):
        async with spoolup.asgi.parse_form(scope, receive) as form:
            ...

:func:`parse_form` returns a :class:`FormRequest`: ``async with`` it (the form is closed
at the end of the block), or ``await`` it for the :class:`~spoolup.form.Form` (as
Starlette's ``request.form()``); ``async with await parse_form(...)`` works too.

The request's ``Content-Type`` and ``Content-Length`` come from the scope's headers;
a declared length over ``max_body_size`` is a 413 before a byte is received, and a
body without a length (chunked) is read until the server says it ended. An
``http.disconnect`` before the end raises :class:`~spoolup.UploadAborted` after
everything received was cleaned up. The work runs in worker threads as described in
:func:`spoolup.aparse_form`.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    MutableMapping,
)
from types import TracebackType
from typing import Any, TypeAlias

from spoolup import form as _form
from spoolup.errors import MalformedRequest, UploadAborted
from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.limits import Limits

__all__ = [
    "FormRequest",
    "Receive",
    "Scope",
    "body_chunks",
    "parse_form",
    "receive_file",
    "request_headers",
]

Scope: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]


def request_headers(scope: Scope) -> tuple[str | None, int | None]:
    """The request's ``Content-Type`` (or ``None``) and declared ``Content-Length``.

    Raises :class:`MalformedRequest` for a length that is not a decimal number, or for
    two ``Content-Length`` headers that disagree.
    """
    content_type: str | None = None
    length: int | None = None
    for name, value in scope.get("headers", ()):
        key = bytes(name).lower()
        if key == b"content-type" and content_type is None:
            content_type = bytes(value).decode("latin-1")
        elif key == b"content-length":
            text = bytes(value).strip()
            if not text.isdigit() or len(text) > 19:
                raise MalformedRequest("invalid Content-Length header")
            number = int(text)
            if length is not None and number != length:
                raise MalformedRequest("conflicting Content-Length headers")
            length = number
    return content_type, length


async def body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """Yield the request body's chunks; raise :class:`UploadAborted` on a disconnect."""
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "http.request":
            body = message.get("body", b"")
            if body:
                yield bytes(body)
            if not message.get("more_body", False):
                return
        elif kind == "http.disconnect":
            raise UploadAborted("the client disconnected before the body was complete")


class FormRequest:
    """The form of a request, to ``await`` or to use with ``async with``.

    ``await`` gives the :class:`~spoolup.form.Form` (close it when done);
    ``async with`` gives it too and closes it when the block ends. Use it once.
    """

    __slots__ = ("_form", "_parse")

    def __init__(self, parse: Coroutine[Any, Any, Form]) -> None:
        self._parse = parse
        self._form: Form | None = None

    def __await__(self) -> Generator[Any, None, Form]:
        return self._parse.__await__()

    async def __aenter__(self) -> Form:
        self._form = await self._parse
        return self._form

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._form is not None:
            await self._form.aclose()


def parse_form(
    scope: Scope,
    receive: Receive,
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> FormRequest:
    """Read the request's ``multipart/form-data`` or urlencoded body into a :class:`Form`.

    Returns a :class:`FormRequest`: ``await`` it or use it with ``async with``. Same
    options and errors as :func:`spoolup.aparse_form`; a request with no
    ``Content-Type`` is an :class:`~spoolup.UnsupportedMediaType`.
    """
    return FormRequest(_parse_form(scope, receive, limits=limits, handlers=handlers))


async def _parse_form(
    scope: Scope,
    receive: Receive,
    *,
    limits: Limits | None,
    handlers: Iterable[HandlerSpec] | None,
) -> Form:
    # The headers are read when the parsing starts (at the first await), not before.
    content_type, length = request_headers(scope)
    return await _form.aparse_form(
        body_chunks(receive),
        content_type or "",
        limits=limits,
        handlers=handlers,
        content_length=length,
    )


async def receive_file(
    scope: Scope,
    receive: Receive,
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
    field_name: str = "",
) -> UploadedFile | None:
    """Read the request's raw body as one file (see :func:`spoolup.receive_file`).

    ``content_type`` defaults to the request's ``Content-Type``.
    """
    declared_type, length = request_headers(scope)
    return await _form.areceive_file(
        body_chunks(receive),
        filename=filename,
        content_type=content_type if content_type is not None else declared_type,
        limits=limits,
        handlers=handlers,
        content_length=length,
        field_name=field_name,
    )
