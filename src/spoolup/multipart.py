"""A sans-IO ``multipart/form-data`` parser (RFC 7578, RFC 2046): bytes in, events out.

::

    parser = MultipartParser(boundary, limits=Limits())
    for chunk in chunks:
        for event in parser.feed(chunk):  # PartStart, PartData, PartEnd
            ...
    parser.close()  # MalformedRequest if the body ended early

The parser performs no I/O and never loops over bytes one by one on the data path: the
delimiter (``CRLF "--" boundary``) is searched in bulk with ``bytes.find``. A chunk that
is all data, with no possible start of a delimiter at its end, is passed on as it is,
without a copy. Besides the chunk being fed, the parser holds at most one delimiter's
worth of bytes (or one part's header block, bounded by ``Limits.max_header_size``),
whatever the input; time is linear in the input, whatever its content.

Choices a client can observe:

- The first boundary may open the body or follow a preamble; the preamble and the
  epilogue after the closing boundary are skipped. A body with no parts
  (``--boundary--``) is a valid empty form.
- Transport padding (spaces and tabs) after a boundary is allowed.
- Strict where two readers could see two different forms (a ``MalformedRequest``):
  the first ``--boundary`` must open the body or follow a CRLF (not a bare CR or LF),
  and a boundary followed by anything but ``--``, padding or CRLF is refused, in the
  preamble as inside the body (RFC 2046 forbids the delimiter inside a part).
- A part needs ``Content-Disposition: form-data`` with a ``name``; see
  :func:`spoolup.headers.form_data_disposition` for the rules on ``name*`` and
  ``filename*``. Header names are lowercased; values are decoded as UTF-8, or
  ISO-8859-1 when not valid UTF-8. Folded header lines, a bare CR or LF, or a second
  ``Content-Disposition`` or ``Content-Type`` in one part are refused. A
  ``Content-Type`` that is not a media type is ``application/octet-stream``
  (:func:`spoolup.headers.media_type`).
- A part with a ``filename`` parameter is a file, even when the name is empty (a browser
  sends ``filename=""`` for a file input left empty); its ``filename`` is then
  ``"upload"`` and its ``raw_filename`` ``""``.
- Every limit of :class:`~spoolup.limits.Limits` but ``memory_threshold`` is enforced
  here, and raises the moment it is crossed.
- After an error the parser refuses more input, as h11 does: every later ``feed`` or
  ``close`` raises the same error, never a quiet success.
- A part whose headers end right at the next delimiter (``...name="a"\r\n`` then
  ``\r\n--boundary``, the delimiter's CRLF doubling as the blank line, as Werkzeug
  sends empty values) is an empty part (RFC 2046 ``MIME-part-headers [CRLF *OCTET]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from spoolup.errors import FileTooLarge, MalformedRequest, RequestTooLarge, TooManyParts
from spoolup.headers import (
    check_boundary,
    form_data_disposition,
    media_type,
    safe_filename,
)
from spoolup.limits import Limits

__all__ = ["Event", "MultipartParser", "PartData", "PartEnd", "PartStart"]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of the events :meth:`MultipartParser.feed` returns."""


@dataclass(frozen=True, slots=True, init=False)
class PartStart(Event):
    """A part begins; its headers are complete.

    ``filename`` is the safe base name (:func:`spoolup.headers.safe_filename`) and
    ``raw_filename`` the name as sent; both are ``None`` for a plain field. ``headers``
    holds every header line in order, names lowercased.
    """

    name: str
    filename: str | None
    raw_filename: str | None
    content_type: str | None
    charset: str | None
    headers: tuple[tuple[str, str], ...]

    def __init__(  # noqa: PLR0917 - the dataclass signature, positional as generated
        self,
        name: str,
        filename: str | None,
        raw_filename: str | None,
        content_type: str | None,
        charset: str | None,
        headers: tuple[tuple[str, str], ...],
    ) -> None:
        # Through the slots' own setters (bound below): the generated __init__ calls
        # object.__setattr__, which looks each slot up by name, six times a part.
        _set_name(self, name)
        _set_filename(self, filename)
        _set_raw_filename(self, raw_filename)
        _set_content_type(self, content_type)
        _set_charset(self, charset)
        _set_headers(self, headers)


@dataclass(frozen=True, slots=True, init=False)
class PartData(Event):
    """Some bytes of the current part's body (never empty)."""

    data: bytes

    def __init__(self, data: bytes) -> None:
        _set_data(self, data)


@dataclass(frozen=True, slots=True)
class PartEnd(Event):
    """The current part is complete."""


# The setters of the events' slots: a frozen dataclass's fields can only be set
# through them or object.__setattr__.
_set_name = vars(PartStart)["name"].__set__
_set_filename = vars(PartStart)["filename"].__set__
_set_raw_filename = vars(PartStart)["raw_filename"].__set__
_set_content_type = vars(PartStart)["content_type"].__set__
_set_charset = vars(PartStart)["charset"].__set__
_set_headers = vars(PartStart)["headers"].__set__
_set_data = vars(PartData)["data"].__set__
_PART_END = PartEnd()
_NO_PART = PartStart("", None, None, None, None, ())

_PREAMBLE, _AFTER_BOUNDARY, _PADDING, _HEADERS, _BODY_START, _DATA, _END = range(7)
_CRLF = b"\r\n"
_HEADER_END = b"\r\n\r\n"
_SPACE_OR_TAB = frozenset(b" \t")
# Only a character class repeated: it cannot backtrack.
_skip_padding = re.compile(rb"[ \t]*").match
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DEFAULT_LIMITS = Limits()
_MAX_KNOWN_TYPES = 16
# Header tails kept by a parser (see _header_block): at most 16 of at most 256 bytes.
_MAX_TAILS = 16
_MAX_TAIL_SIZE = 256
_Headers: TypeAlias = tuple[tuple[str, str], ...]
# A header block of the shape browsers and HTTP libraries send: Content-Disposition
# with a quoted name (and filename) holding no quote, backslash, CR or LF, then maybe a
# Content-Type line; header names in any case, spaces and tabs around values. Every
# block it matches the general path accepts with the same result: it is only quicker.
# ASCII: with Unicode IGNORECASE, the long s (U+017F) would match "s" and the Kelvin
# sign (U+212A) "k", in names the general path refuses.
_COMMON = (
    r'(?i:content-disposition):[ \t]*(form-data; name="([^"\\\r\n]*)"'
    r'(?:; filename="([^"\\\r\n]*)")?)[ \t]*'
    r"(?:\r\n(?i:content-type):[ \t]*([^\r\n]*))?\Z"
)
_common_block = re.compile(_COMMON, re.ASCII).match
WholeField: TypeAlias = tuple[str, bytes, "str | None"]
"""A field whose body came in one piece: ``(name, body, charset)``.

See :meth:`MultipartParser.feed_fields`."""
WholeFile: TypeAlias = tuple[
    str, str, "str | None", "str | None", "str | None", "tuple[tuple[str, str], ...]", bytes
]
"""A file whose body came in one piece: the fields of its ``PartStart``, then the body.

See :meth:`MultipartParser.feed_fields`."""
_Events: TypeAlias = list["PartStart | PartData | PartEnd | WholeField | WholeFile"]
# A part not announced yet: the fields of its PartStart.
_Pending: TypeAlias = tuple[
    str, "str | None", "str | None", "str | None", "str | None", "tuple[tuple[str, str], ...]"
]
# A part's (headers, Content-Disposition, content type, charset).
_HeaderBlock: TypeAlias = tuple[_Headers, str | None, str | None, str | None]
# The header names clients send, spelled as they send them, already checked and lowercased.
_KNOWN_NAMES = {
    spelling.encode(): spelling.lower()
    for spelling in (
        "Content-Disposition",
        "content-disposition",
        "Content-Type",
        "content-type",
        "Content-Transfer-Encoding",
        "Content-Length",
    )
}


class MultipartParser:
    """Incremental ``multipart/form-data`` parser; performs no I/O.

    ``boundary`` is the checked boundary (see :func:`spoolup.headers.multipart_boundary`).
    :meth:`feed` takes chunks of any size and returns the events they complete;
    :meth:`close` checks the body ended with its closing boundary. Memory held between
    calls is bounded by one delimiter or one header block, never by the input (besides
    a few content types and header lines parsed once and reused, 16 of each kind at most).
    """

    __slots__ = (
        "_carry",
        "_common",
        "_compact",
        "_delim",
        "_error",
        "_fed",
        "_fields",
        "_files",
        "_hbuf",
        "_limits",
        "_part",
        "_part_limit",
        "_part_size",
        "_state",
        "_tails",
        "_type_lines",
        "_types",
    )

    def __init__(self, boundary: bytes | str, *, limits: Limits = _DEFAULT_LIMITS) -> None:
        self._delim = b"\r\n--" + check_boundary(boundary)
        self._limits = limits
        # _COMMON reads at most two header lines: with fewer allowed, every block goes
        # the general way, which enforces the limit.
        self._common = limits.max_headers >= 2
        self._compact = False
        self._state = _PREAMBLE
        # A CRLF in front lets the delimiter search find a boundary that opens the body.
        self._carry = _CRLF
        self._hbuf = bytearray()
        self._error: Exception | None = None
        self._fed = 0
        self._files = 0
        self._fields = 0
        self._part = _NO_PART
        self._part_limit = 0
        self._part_size = 0
        self._types: dict[str, tuple[str, str | None]] = {}
        self._type_lines: dict[str, tuple[tuple[str, str], str, str | None]] = {}
        # The header lines after a part's first one, by their bytes (see _header_block).
        self._tails: dict[bytes, tuple[_Headers, str | None, str | None]] = {}

    def feed(self, data: bytes) -> list[PartStart | PartData | PartEnd]:
        """Parse the next chunk of the body and return the events it completes.

        Raises :class:`~spoolup.errors.MalformedRequest` for a body that breaks the
        format and a :class:`~spoolup.errors.RequestTooLarge` subclass the moment a
        limit is crossed. Data after the closing boundary is ignored. Once it has
        raised, every later call raises the same error (the parser's state is lost).
        """
        if self._error is not None:
            raise self._error
        self._compact = False
        try:
            # Without _compact the events hold no WholeField.
            return self._feed(data)  # type: ignore[return-value]
        except Exception as exc:
            self._error = exc
            raise

    def feed_fields(
        self, data: bytes
    ) -> list[PartStart | PartData | PartEnd | WholeField | WholeFile]:
        """:meth:`feed`, but a part whose body is in this chunk comes as one tuple
        instead of its three events: ``(name, body, charset)`` for a field, ``(name,
        filename, raw_filename, content_type, charset, headers, body)`` for a file
        (internal: what :class:`spoolup.form.Receiver` reads; thousands of small parts
        cost less).

        The same checks and limits apply, in the same order; a part cut by a chunk
        boundary comes as events (and so does the first part of a body).
        """
        if self._error is not None:
            raise self._error
        self._compact = True
        try:
            return self._feed(data)
        except Exception as exc:
            self._error = exc
            raise

    def _feed(self, data: bytes) -> _Events:
        if type(data) is not bytes:
            data = bytes(data)
        self._fed += len(data)
        if self._fed > self._limits.max_body_size:
            raise RequestTooLarge.for_limit(
                "max_body_size", self._limits.max_body_size, "request body"
            )
        carry = self._carry
        if self._state == _DATA and not carry:
            # The hot path of a large file: a whole chunk of data, with no delimiter in
            # it and no CR near its end that could start one, is passed on as it is.
            delim = self._delim
            if data.find(delim) < 0:
                n = end = len(data)
                # Keep back a tail that may be the start of a delimiter: it can only
                # begin at the last CR, since the boundary holds no CR.
                cr = data.rfind(b"\r", max(0, n - len(delim) + 1))
                if cr >= 0 and delim.startswith(data[cr:]):
                    end = cr
                    self._carry = data[cr:]
                if not end:
                    return []
                size = self._part_size + end
                if size > self._part_limit:
                    self._raise_part_too_large()
                self._part_size = size
                return [PartData(data if end == n else data[:end])]
        events: _Events = []
        if not carry:
            self._run(data, 0, events)
        elif self._state != _DATA:
            self._carry = b""
            self._run(carry + data, 0, events)
        else:
            # The carry is a proper prefix of the delimiter. Decide what it is from the
            # first bytes of ``data`` alone, so that ``data`` itself is never copied.
            delim = self._delim
            probe = carry + data[: len(delim) - len(carry)]
            if probe.startswith(delim):
                self._carry = b""
                self._end_part(events)
                self._run(data, len(delim) - len(carry), events)
            elif len(probe) < len(delim) and delim.startswith(probe):
                self._carry = probe
            else:
                self._carry = b""
                self._emit(carry, events)
                self._run(data, 0, events)
        return events

    def close(self) -> None:
        """Check that the body is complete; raise ``MalformedRequest`` if it is not.

        After an error (from :meth:`feed` or an earlier ``close``) raises that error.
        """
        if self._error is not None:
            raise self._error
        if self._state != _END:
            if self._state == _PREAMBLE:
                msg = "the body holds no multipart boundary"
            else:
                msg = "the multipart body ended before its closing boundary"
            self._error = MalformedRequest(msg)
            raise self._error

    def _emit(self, data: bytes, events: _Events) -> None:
        size = self._part_size + len(data)
        if size > self._part_limit:
            self._raise_part_too_large()
        self._part_size = size
        events.append(PartData(data))

    def _raise_part_too_large(self) -> None:
        what = f"part {self._part.name[:100]!r}"
        if self._part.filename is not None:
            limit = self._limits.max_file_size
            raise FileTooLarge.for_limit("max_file_size", limit, what)
        limit = self._limits.max_field_size
        raise RequestTooLarge.for_limit("max_field_size", limit, what)

    def _end_part(self, events: _Events) -> None:
        events.append(_PART_END)
        self._part_size = 0
        self._state = _AFTER_BOUNDARY

    def _run(self, buf: bytes, i: int, events: _Events) -> None:
        """Parse ``buf[i:]``; keep what cannot be decided yet in the carry or header buffer."""
        delim = self._delim
        dlen = len(delim)
        n = len(buf)
        find = buf.find
        append = events.append
        max_header_size = self._limits.max_header_size
        dash = delim[2:]
        state = self._state
        while True:
            if state == _DATA:
                pos = find(delim, i)
                if pos < 0:
                    # Keep back a tail that may be the start of a delimiter: it can only
                    # begin at the last CR, since the boundary holds no CR.
                    end = n
                    cr = buf.rfind(b"\r", max(i, n - dlen + 1))
                    if cr >= 0 and delim.startswith(buf[cr:]):
                        end = cr
                        self._carry = buf[cr:]
                    if end > i:
                        size = self._part_size + end - i
                        if size > self._part_limit:
                            self._raise_part_too_large()
                        self._part_size = size
                        append(PartData(buf if i == 0 and end == n else buf[i:end]))
                    break
                if pos > i:
                    if self._part_size + pos - i > self._part_limit:
                        self._raise_part_too_large()
                    append(PartData(buf[i:pos]))
                append(_PART_END)
                self._part_size = 0
                # The usual case, many times a chunk for small parts: the next part's
                # whole header block is in ``buf`` (and, for a field, maybe its body).
                while True:
                    i = pos + dlen
                    if not buf.startswith(_CRLF, i):
                        state = _AFTER_BOUNDARY
                        break
                    end = find(_HEADER_END, i)
                    if not 0 <= end - i - 2 <= max_header_size:
                        state = _HEADERS  # the header search starts at this CRLF
                        break
                    field = self._start_part(buf[i + 2 : end], events, defer=True)
                    i = end + 4
                    if n - i < dlen or buf.startswith(dash, i):
                        state = _BODY_START
                    elif field is not None:
                        pos = find(delim, i)
                        if 0 <= pos - i <= self._part_limit:
                            if field[1] is None:
                                append((field[0], buf[i:pos], field[4]))
                            else:
                                append((*field, buf[i:pos]))  # type: ignore[arg-type]
                            continue  # the next part starts at this delimiter
                    if field is not None:
                        self._announce(field, events)
                    break
                if state != _HEADERS:
                    continue
            elif state == _BODY_START:
                # RFC 2046: body-part := MIME-part-headers [CRLF *OCTET]. Headers may end
                # at the delimiter, whose CRLF then doubles as the blank line: the part
                # is empty, and what follows is the boundary, not data.
                if buf.startswith(dash, i):
                    append(_PART_END)
                    self._part_size = 0
                    i += dlen - 2
                    state = _AFTER_BOUNDARY
                elif n - i < dlen - 2 and dash.startswith(buf[i:]):
                    self._carry = buf[i:]  # too short to tell yet
                    break
                else:
                    state = _DATA
                continue
            elif state == _AFTER_BOUNDARY:
                two = buf[i : i + 2]
                if two == _CRLF:
                    state = _HEADERS
                elif two == b"--":
                    state = _END
                elif two and two[0] in _SPACE_OR_TAB:
                    state = _PADDING
                    continue
                elif len(two) == 2 or (two and two not in (b"\r", b"-")):
                    raise MalformedRequest("a boundary is followed by unexpected bytes")
                else:
                    self._carry = two
                    break
            elif state == _PREAMBLE:
                # Search "--boundary" without the CRLF, so that one the CRLF does not
                # precede is seen too, and refused: a reader that skips stray CR or LF
                # bytes would find a part where this parser would find none.
                pos = buf.find(delim[2:], i)
                if pos < 0:
                    # What is kept always holds the two bytes before a later match.
                    self._carry = buf[max(i, n - dlen + 1) :]
                    break
                if buf[pos - 2 : pos] != _CRLF:
                    raise MalformedRequest("the first boundary does not start a line")
                i = pos + dlen - 2
                state = _AFTER_BOUNDARY
                continue
            elif state == _PADDING:
                match = _skip_padding(buf, i)
                i = match.end() if match else i
                two = buf[i : i + 2]
                if two == _CRLF:
                    state = _HEADERS
                elif two in (b"", b"\r"):
                    self._carry = two
                    break
                else:
                    raise MalformedRequest("a boundary is followed by unexpected bytes")
            if state == _HEADERS:
                if not self._hbuf:
                    end = find(_HEADER_END, i)
                    if 0 <= end - i - 2 <= max_header_size:
                        self._start_part(buf[i + 2 : end], events)
                        i = end + 4
                        state = _BODY_START
                        continue
                i = self._headers(buf, i, events)
                if i < 0:
                    break
                state = _BODY_START
            else:  # _END: the epilogue is ignored
                break
        self._state = state

    def _headers(self, buf: bytes, i: int, events: _Events) -> int:
        """Collect a header block starting at the CRLF ending the boundary line.

        Returns the index of the part's first data byte, or -1 when the block is not
        complete yet (what there is of it then sits in the header buffer, which never
        holds more than ``max_header_size`` + 6 bytes).
        """
        limit = self._limits.max_header_size
        hbuf = self._hbuf
        old = len(hbuf)
        hbuf += buf[i : i + limit + 6 - old]
        # The buffer is the boundary line's CRLF, the block, then the blank line's CRLF.
        end = hbuf.find(_HEADER_END, max(0, old - 3))
        if end >= 0:
            # Within the limit: the buffer holds at most limit + 6 bytes, end marker included.
            block = bytes(hbuf[2:end])
            hbuf.clear()
            self._start_part(block, events)
            return i + end + 4 - old
        # Not complete: the block is at least what is buffered, less the CRLF in front
        # and any start of the end marker at the back.
        tail = 3 if hbuf.endswith(b"\r\n\r") else 2 if hbuf.endswith(_CRLF) else hbuf[-1] == 13
        if len(hbuf) - 2 - tail > limit:
            raise self._header_too_large()
        return -1

    def _header_too_large(self) -> RequestTooLarge:
        limit = self._limits.max_header_size
        return RequestTooLarge.for_limit("max_header_size", limit, "a part's header block")

    def _start_part(self, block: bytes, events: _Events, *, defer: bool = False) -> _Pending | None:
        """Check a part's header block and announce it with a ``PartStart``.

        With ``defer``, in compact mode (:meth:`feed_fields`), the fields of its
        ``PartStart`` are returned instead, for the part to be sent whole or announced
        by :meth:`_announce`.
        """
        limits = self._limits
        if not block:
            raise MalformedRequest("a part has no headers")
        # The shapes browsers and HTTP libraries send, read by one match (see _COMMON):
        # the general path below gives the same result for them, only slower.
        try:
            common = _common_block(block.decode()) if self._common else None
        except UnicodeDecodeError:
            common = None
        if common is not None:
            disposition, name, raw_filename, content_type = common.groups()
            if content_type is None:
                headers: _Headers = (("content-disposition", disposition),)
                charset = None
            else:
                # A form's files mostly share a few types: each line is read once.
                line = self._type_lines.get(content_type) or self._type_line(content_type)
                type_header, content_type, charset = line
                headers = (("content-disposition", disposition), type_header)
        else:
            headers, disposition, content_type, charset = self._header_block(block)
            if disposition is None:
                raise MalformedRequest("a part has no Content-Disposition header")
            name, raw_filename = form_data_disposition(disposition)
        if raw_filename is None:
            self._fields += 1
            if self._fields > limits.max_fields:
                raise TooManyParts.for_limit("max_fields", limits.max_fields, "form fields")
            self._part_limit = limits.max_field_size
            if defer and self._compact:
                return name, None, None, content_type, charset, headers
            start = PartStart(name, None, None, content_type, charset, headers)
        else:
            self._files += 1
            if self._files > limits.max_files:
                raise TooManyParts.for_limit("max_files", limits.max_files, "file parts")
            self._part_limit = limits.max_file_size
            filename = safe_filename(raw_filename)
            if defer and self._compact:
                return name, filename, raw_filename, content_type, charset, headers
            start = PartStart(name, filename, raw_filename, content_type, charset, headers)
        self._part = start
        events.append(start)
        return None

    def _announce(self, part: _Pending, events: _Events) -> None:
        """The ``PartStart`` of a part that :meth:`_start_part` deferred."""
        start = self._part = PartStart(*part)
        events.append(start)

    def _type_line(self, value: str) -> tuple[tuple[str, str], str, str | None]:
        """A Content-Type value as _COMMON matched it: ``(header, type, charset)``."""
        stripped = value.rstrip(" \t")
        line = (("content-type", stripped), *self._media_type(stripped))
        if len(self._type_lines) < _MAX_KNOWN_TYPES:
            self._type_lines[value] = line
        return line

    def _media_type(self, content_type: str) -> tuple[str, str | None]:
        """The checked ``(type, charset)`` of a part's Content-Type, parsed once a parser."""
        known = self._types.get(content_type)
        if known is None:
            known = media_type(content_type)
            if len(self._types) < _MAX_KNOWN_TYPES:
                self._types[content_type] = known
        return known

    def _header_block(self, block: bytes) -> _HeaderBlock:
        """Parse a header block of several lines: ``(headers, disposition, type, charset)``.

        What browsers and HTTP libraries send is a Content-Disposition line, the only
        one that changes from part to part, then lines (Content-Type) that repeat across
        a form's files: those are parsed once. Only the tail of a block that was parsed
        the long way without error is kept, so the short way accepts nothing the long
        way would refuse, and yields the same result.
        """
        line, _, rest = block.partition(_CRLF)
        tail = self._tails.get(rest)
        raw_name, _, raw_value = line.partition(b":")
        if (
            tail is not None
            and _KNOWN_NAMES.get(raw_name) == "content-disposition"
            and 13 not in line
            and 10 not in line
        ):
            more_headers, content_type, charset = tail
            raw_value = raw_value.strip(b" \t")
            try:
                value = raw_value.decode()
            except UnicodeDecodeError:
                value = raw_value.decode("latin-1")
            return (("content-disposition", value), *more_headers), value, content_type, charset
        headers, disposition, content_type = _header_lines(block, self._limits.max_headers)
        charset = None
        if content_type is not None:
            # A form's files mostly share a few types: parse each one once.
            content_type, charset = self._media_type(content_type)
        if (
            headers[0][0] == "content-disposition"
            and len(rest) <= _MAX_TAIL_SIZE
            and len(self._tails) < _MAX_TAILS
        ):
            self._tails[rest] = headers[1:], content_type, charset
        return headers, disposition, content_type, charset


def _header_name(raw_name: bytes, colon: bytes, line: bytes) -> str:
    """The lowercased name of a header line, checked to be a token."""
    if not colon or not raw_name or raw_name.translate(None, _TOKEN_BYTES):
        raise MalformedRequest(f"invalid part header line {line[:100]!r}")
    return raw_name.decode("ascii").lower()


def _header_lines(
    block: bytes, max_headers: int
) -> tuple[tuple[tuple[str, str], ...], str | None, str | None]:
    """Parse a part's header lines into ``(headers, disposition, content_type)``."""
    lines = block.split(_CRLF)
    if len(lines) > max_headers:
        raise TooManyParts.for_limit("max_headers", max_headers, "a part's header lines")
    headers: list[tuple[str, str]] = []
    disposition: str | None = None
    content_type: str | None = None
    for line in lines:
        if 13 in line or 10 in line:
            raise MalformedRequest("a part header holds a bare CR or LF")
        raw_name, colon, raw_value = line.partition(b":")
        name = _KNOWN_NAMES.get(raw_name) or _header_name(raw_name, colon, line)
        raw_value = raw_value.strip(b" \t")
        try:
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            value = raw_value.decode("latin-1")
        if name == "content-disposition":
            if disposition is not None:
                raise MalformedRequest("a part has two Content-Disposition headers")
            disposition = value
        elif name == "content-type":
            if content_type is not None:
                raise MalformedRequest("a part has two Content-Type headers")
            content_type = value
        headers.append((name, value))
    return tuple(headers), disposition, content_type
