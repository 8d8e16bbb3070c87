"""A sans-IO ``application/x-www-form-urlencoded`` parser: bytes in, fields out.

::

    parser = URLEncodedParser(limits=Limits())
    for chunk in chunks:
        for field in parser.feed(chunk):
            ...
    fields_at_end = parser.close()

Performs no I/O. Only ``&`` separates fields (never ``;``, which is kept in values);
``+`` is a space; ``%XX`` escapes are decoded. Choices a client can observe:

- A ``%`` not followed by two hex digits is kept as it is (``100%`` stays ``100%``), as
  browsers and the WHATWG URL standard do.
- The decoded bytes must be valid in the charset (UTF-8 by default): invalid bytes are a
  :class:`~spoolup.errors.MalformedRequest` rather than a silent U+FFFD, so that a
  client never has its data changed without being told.
- A field without ``=`` is a name with the value ``""``; empty fields (``a=1&&b=2``, a
  trailing ``&``) are skipped.
- ``Limits.max_field_size`` bounds one field as sent, name and value together (an escape
  counts three bytes), so that no part of a field is unbounded;
  ``Limits.max_fields`` bounds their number and ``Limits.max_body_size`` the body. Each
  raises while streaming, the moment it is crossed; the parser holds at most one field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spoolup.errors import MalformedRequest, RequestTooLarge, TooManyParts, UnsupportedMediaType
from spoolup.headers import percent_decode
from spoolup.limits import Limits

__all__ = ["Field", "URLEncodedParser"]

_DEFAULT_LIMITS = Limits()
_not_amp = re.compile(rb"[^&]").search


@dataclass(frozen=True, slots=True)
class Field:
    """One decoded ``name=value`` pair of the body."""

    name: str
    value: str


class URLEncodedParser:
    """Incremental form-urlencoded parser; performs no I/O.

    ``charset`` is the charset of the decoded bytes (the ``charset`` parameter of the
    ``Content-Type``, UTF-8 when absent); one Python does not know as a text encoding
    raises :class:`~spoolup.errors.UnsupportedMediaType`. Between calls the parser holds
    at most the current incomplete field, bounded by ``Limits.max_field_size``.
    """

    __slots__ = ("_charset", "_count", "_error", "_fed", "_limits", "_pending")

    def __init__(self, *, limits: Limits = _DEFAULT_LIMITS, charset: str = "utf-8") -> None:
        try:
            b"x".decode(charset, "replace")
        except (LookupError, ValueError):  # unknown, not a text encoding, or "undefined"
            raise UnsupportedMediaType(f"unsupported form charset {charset[:64]!r}") from None
        self._charset = charset
        self._limits = limits
        self._pending = bytearray()
        self._error: Exception | None = None
        self._fed = 0
        self._count = 0

    def feed(self, data: bytes) -> list[Field]:
        """Parse the next chunk and return the fields it completes.

        Raises ``MalformedRequest`` for bytes invalid in the charset and a
        ``RequestTooLarge`` subclass the moment a limit is crossed. Once it has raised,
        every later call raises the same error.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except Exception as exc:
            self._error = exc
            raise

    def _feed(self, data: bytes) -> list[Field]:
        limits = self._limits
        self._fed += len(data)
        if self._fed > limits.max_body_size:
            raise RequestTooLarge.for_limit("max_body_size", limits.max_body_size, "request body")
        fields: list[Field] = []
        pending = self._pending
        start = 0
        while True:
            amp = data.find(b"&", start)
            if amp == start and not pending:
                # A run of "&": skip it in one search, not one turn of the loop per byte.
                match = _not_amp(data, start)
                if match is None:
                    return fields
                start = match.start()
                continue
            end = len(data) if amp < 0 else amp
            if len(pending) + end - start > limits.max_field_size:
                raise RequestTooLarge.for_limit(
                    "max_field_size", limits.max_field_size, "a form field"
                )
            if amp < 0:
                pending += data[start:]
                return fields
            if pending:
                pending += data[start:amp]
                self._add(bytes(pending), fields)
                pending.clear()
            else:  # not empty: runs of "&" were skipped above
                self._add(data[start:amp], fields)
            start = amp + 1

    def close(self) -> list[Field]:
        """Return the last field, if the body did not end with ``&``.

        After an error (from :meth:`feed` or an earlier ``close``) raises that error.
        """
        if self._error is not None:
            raise self._error
        fields: list[Field] = []
        if self._pending:
            try:
                self._add(bytes(self._pending), fields)
            except Exception as exc:
                self._error = exc
                raise
            self._pending.clear()
        return fields

    def _add(self, pair: bytes, fields: list[Field]) -> None:
        self._count += 1
        if self._count > self._limits.max_fields:
            raise TooManyParts.for_limit("max_fields", self._limits.max_fields, "form fields")
        name, _, value = pair.partition(b"=")
        fields.append(Field(self._decode(name), self._decode(value)))

    def _decode(self, raw: bytes) -> str:
        raw = percent_decode(raw.replace(b"+", b" "), strict=False)
        try:
            return raw.decode(self._charset)
        except ValueError:  # UnicodeDecodeError, or UnicodeError from codecs like idna
            msg = f"a form field is not valid {self._charset}"
            raise MalformedRequest(msg) from None
