"""The WSGI driver: read a form or a raw file from a WSGI ``environ``.

::

    def app(environ, start_response):
        with spoolup.wsgi.parse_form(environ) as form:
            ...

``CONTENT_TYPE`` and ``CONTENT_LENGTH`` come from the environ; a declared length over
``max_body_size`` is a 413 before a byte is read, and exactly the declared length is
read from ``wsgi.input`` (never more, which could block). Without a length, the body is
read to its end when the server marks it as terminated (``wsgi.input_terminated``) or
says it is chunked; otherwise it is taken as empty, since reading further could block
forever. A body that ends before its declared length, or a read that fails, is an
:class:`~spoolup.UploadAborted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from spoolup import _io
from spoolup import form as _form
from spoolup.errors import MalformedRequest, UploadAborted
from spoolup.files import UploadedFile
from spoolup.form import Form
from spoolup.handlers import HandlerSpec
from spoolup.limits import Limits

__all__ = ["body_chunks", "content_length", "parse_form", "receive_file"]


def content_length(environ: Mapping[str, Any]) -> int | None:
    """The declared ``CONTENT_LENGTH``, or ``None``; ``MalformedRequest`` if invalid."""
    text = str(environ.get("CONTENT_LENGTH") or "").strip()
    if not text:
        return None
    # isascii: str.isdigit() also accepts digits int() refuses, like "²" (a byte of
    # latin-1, which is how WSGI servers decode header bytes).
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise MalformedRequest("invalid Content-Length header")
    return int(text)


def body_chunks(environ: Mapping[str, Any], length: int | None) -> Iterator[bytes]:
    """Yield the body from ``wsgi.input``: ``length`` bytes, or to its end if terminated."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    read = stream.read
    if length is None:
        chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        if not (environ.get("wsgi.input_terminated") or chunked):
            return
        while chunk := _read(read, _io.READ_SIZE):
            yield chunk
        return
    remaining = length
    while remaining > 0:
        chunk = _read(read, min(remaining, _io.READ_SIZE))
        if not chunk:
            raise UploadAborted(
                f"the body ended after {length - remaining} of its declared {length} bytes"
            )
        remaining -= len(chunk)
        yield chunk


def _read(read: Any, size: int) -> bytes:
    try:
        data: bytes = read(size)
    except OSError as exc:
        raise UploadAborted(f"reading the request body failed: {exc}") from exc
    return data


def parse_form(
    environ: Mapping[str, Any],
    *,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
) -> Form:
    """Read the request's ``multipart/form-data`` or urlencoded body into a :class:`Form`.

    Same options and errors as :func:`spoolup.parse_form`.
    """
    length = content_length(environ)
    return _form.parse_form(
        body_chunks(environ, length),
        str(environ.get("CONTENT_TYPE") or ""),
        limits=limits,
        handlers=handlers,
        content_length=length,
    )


def receive_file(
    environ: Mapping[str, Any],
    *,
    filename: str,
    content_type: str | None = None,
    limits: Limits | None = None,
    handlers: Iterable[HandlerSpec] | None = None,
    field_name: str = "",
) -> UploadedFile | None:
    """Read the request's raw body as one file (see :func:`spoolup.receive_file`).

    ``content_type`` defaults to the request's ``CONTENT_TYPE``.
    """
    length = content_length(environ)
    declared = environ.get("CONTENT_TYPE") or None
    return _form.receive_file(
        body_chunks(environ, length),
        filename=filename,
        content_type=content_type if content_type is not None else declared,
        limits=limits,
        handlers=handlers,
        content_length=length,
        field_name=field_name,
    )
