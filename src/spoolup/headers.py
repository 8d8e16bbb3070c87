"""Header parameter parsing and filename safety, in linear time. Performs no I/O.

``Content-Type`` and ``Content-Disposition`` values are parsed by a hand-written scanner
built on ``str.find`` (every search is bounded by the next separator), so the time is
linear in the length of the value whatever it holds; no regular expression that could
backtrack is used.

Decisions a client can observe:

- Parameter names are lowercased; a parameter given twice (in any spelling of case) is a
  :class:`~spoolup.errors.MalformedRequest`, so that two readers never see two values.
- In quoted strings, ``\\"`` is a quote and ``\\\\`` a backslash (RFC 9110 quoted
  pairs); any other backslash is kept as sent. Browsers do not escape backslashes
  (WHATWG escapes only ``"``, CR and LF) and old ones send Windows paths
  (``C:\\Users\\a\\f.txt``): ``raw_filename`` keeps them, ``filename`` is the last
  path component. A value ending in a lone backslash before its quote is refused.
- The WHATWG escapes browsers use in names (``%22`` for a quote, ``%0D``, ``%0A``) are
  kept as sent: a client that is not a browser may mean a literal ``%22``.
- RFC 5987 / RFC 8187 extended values (``filename*=utf-8''na%C3%AFve.txt``) are decoded
  and stored under their own name (``filename*``). The charsets ``utf-8``,
  ``iso-8859-1`` (``latin-1``) and ``us-ascii`` are understood; any other charset, a bad
  percent-escape or bytes invalid in the charset is a ``MalformedRequest``.
- A declared ``Content-Type`` (of a part, or of a raw body) that is not an RFC 9110
  media type (``type/subtype``, both tokens, at most 255 characters) falls back to
  ``application/octet-stream``, and a ``charset`` that is not a short token is
  dropped (:func:`media_type`): the upload is kept, and the type stored with it is
  always one a server can send back in a header. Refusing the whole form over an
  advisory header would punish the user for their browser's guess.
- Header bytes are decoded by :func:`decode_header_value`: UTF-8 when they are valid
  UTF-8 (browsers send raw UTF-8 file names), else ISO-8859-1, which never fails.
"""

from __future__ import annotations

import unicodedata

from spoolup.errors import MalformedRequest, UnsupportedMediaType

__all__ = [
    "check_boundary",
    "decode_header_value",
    "form_data_disposition",
    "is_media_type",
    "media_type",
    "multipart_boundary",
    "parse_options_header",
    "percent_decode",
    "safe_filename",
]

# RFC 9110 tchar: the characters of a token (a header or parameter name).
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# RFC 2046 bchars: the characters a multipart boundary may hold.
_BOUNDARY_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
)
_MAX_BOUNDARY = 70
MAX_MEDIA_TYPE = 255
"""Characters of a media type's ``type/subtype`` (RFC 6838 allows 127 for each half)."""
FALLBACK_MEDIA_TYPE = "application/octet-stream"
"""The type of a part or body whose declared ``Content-Type`` is not a media type."""
_MAX_CHARSET = 64
_EXT_CHARSETS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "iso-8859-1": "latin-1",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "us-ascii": "ascii",
    "ascii": "ascii",
}
# Every two-digit hex escape (either case) mapped to its byte.
_HEX_BYTES = {
    f"{hi}{lo}".encode(): bytes([int(f"{hi}{lo}", 16)])
    for hi in "0123456789abcdefABCDEF"
    for lo in "0123456789abcdefABCDEF"
}
# Categories removed from file names: controls (NUL, CR, LF...), format characters
# (the bidirectional overrides U+202A-202E and U+2066-2069, the marks U+200E/U+200F and
# U+061C, zero-width characters, BOM), lone surrogates and line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# The two characters a backslash escapes in a quoted string; before any other it is a
# literal backslash.
_ESCAPED = ('"', "\\")
_FALLBACK_NAME = "upload"
_MAX_NAME_BYTES = 255
# An extension longer than this is not kept when a long name is truncated.
_MAX_EXT_BYTES = 32


def decode_header_value(raw: bytes) -> str:
    """Decode header bytes: UTF-8 when valid (what browsers send), else ISO-8859-1.

    Never raises: ISO-8859-1 maps every byte to a character.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def percent_decode(raw: bytes, *, strict: bool) -> bytes:
    """Decode ``%XX`` escapes in ``raw``; linear time.

    With ``strict`` a ``%`` not followed by two hex digits raises ``MalformedRequest``;
    without, it is kept as it is (what browsers and the WHATWG URL standard do).
    """
    if b"%" not in raw:
        return raw
    pieces = raw.split(b"%")
    out = [pieces[0]]
    hex_bytes = _HEX_BYTES
    for piece in pieces[1:]:
        byte = hex_bytes.get(piece[:2])
        if byte is not None:
            out.append(byte)
            out.append(piece[2:])
        elif strict:
            raise MalformedRequest(f"invalid percent-escape %{piece[:2]!r} in a header value")
        else:
            out.append(b"%")
            out.append(piece)
    return b"".join(out)


def _skip_spaces(value: str, pos: int, end: int) -> int:
    while pos < end and value[pos] in " \t":
        pos += 1
    return pos


def _read_quoted(value: str, pos: int) -> tuple[str, int]:
    """Read the quoted string opening at ``value[pos]``; return it and the index after it.

    Only ``\\"`` and ``\\\\`` are escapes: browsers do not escape a backslash (WHATWG
    escapes only ``"``, CR and LF), so any other backslash is kept as sent, and a
    Windows path keeps its separators. Each search starts where the previous one
    stopped, so a string full of backslashes is still read in linear time.
    """
    start = pos + 1
    close = value.find('"', start)
    pieces: list[str] = []
    while True:
        if close < 0:
            raise MalformedRequest("unterminated quoted string in a header parameter")
        escape = value.find("\\", start, close)
        if escape < 0:
            pieces.append(value[start:close])
            return "".join(pieces), close + 1
        after = value[escape + 1 : escape + 2]
        if after in _ESCAPED:
            pieces.append(value[start:escape])
            pieces.append(after)
            start = escape + 2
        else:  # a literal backslash
            pieces.append(value[start : escape + 1])
            start = escape + 1
        if start > close:  # the escaped character was the quote we took for the end
            close = value.find('"', start)


def _decode_extended(name: str, value: str) -> str:
    """Decode an RFC 5987 ``charset'lang'pct-encoded`` value."""
    charset, sep1, rest = value.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not sep1 or not sep2:
        raise MalformedRequest(f"parameter {name} is not of the form charset'lang'value")
    codec = _EXT_CHARSETS.get(charset.strip().lower())
    if codec is None:
        raise MalformedRequest(f"parameter {name} uses an unsupported charset {charset!r}")
    try:
        raw = percent_decode(encoded.encode("ascii"), strict=True)
        return raw.decode(codec)
    except UnicodeError:
        raise MalformedRequest(f"parameter {name} is not valid {charset}") from None


def parse_options_header(value: str) -> tuple[str, dict[str, str]]:
    """Split a header value into its lowercased main value and its parameters.

    ``'form-data; name="a"; filename*=utf-8\\'\\'%C3%A9.txt'`` gives
    ``("form-data", {"name": "a", "filename*": "é.txt"})``. Parameter names are
    lowercased; quoted strings are unescaped; RFC 5987 ``name*`` values are decoded and
    kept under ``name*``. Raises ``MalformedRequest`` on a parameter given twice, a
    parameter without ``=``, an unterminated quoted string or a bad extended value.
    Linear time in ``len(value)``; performs no I/O.
    """
    end = len(value)
    semi = value.find(";")
    if semi < 0:
        return value.strip().lower(), {}
    main = value[:semi].strip().lower()
    params: dict[str, str] = {}
    pos = semi + 1
    while pos < end:
        semi = value.find(";", pos)
        if semi < 0:
            semi = end
        eq = value.find("=", pos, semi)
        if eq < 0:
            if value[pos:semi].strip(" \t"):
                raise MalformedRequest(f"header parameter without a value in {main!r}")
            pos = semi + 1  # an empty parameter, as in "a;;b" or a trailing ";"
            continue
        name = value[pos:eq].strip(" \t").lower()
        if not name or not _TOKEN_CHARS.issuperset(name):
            raise MalformedRequest(f"invalid header parameter name {name[:64]!r}")
        start = _skip_spaces(value, eq + 1, end)
        if start < end and value[start] == '"':
            param, after = _read_quoted(value, start)
            after = _skip_spaces(value, after, end)
            if after < end and value[after] != ";":
                raise MalformedRequest(f"unexpected text after the quoted parameter {name}")
            pos = after + 1
        else:
            param = value[start:semi].strip(" \t")
            pos = semi + 1
        if name.endswith("*"):
            param = _decode_extended(name, param)
        if name in params:
            raise MalformedRequest(f"header parameter {name} given twice")
        params[name] = param
    return main, params


def is_media_type(value: str) -> bool:
    """True if ``value`` is an RFC 9110 ``type/subtype`` (two tokens), at most 255 characters."""
    kind, slash, subtype = value.partition("/")
    return (
        0 < len(value) <= MAX_MEDIA_TYPE
        and bool(slash)
        and bool(kind)
        and bool(subtype)
        and _TOKEN_CHARS.issuperset(kind)
        and _TOKEN_CHARS.issuperset(subtype)
    )


def media_type(value: str) -> tuple[str, str | None]:
    """The checked ``(type, charset)`` of a declared ``Content-Type``; never raises.

    The type is lowercased. A value that does not parse, or whose type is not an RFC
    9110 media type (:func:`is_media_type`), gives ``("application/octet-stream",
    None)``; a ``charset`` that is not a token of at most 64 characters is dropped.
    """
    try:
        kind, params = parse_options_header(value)
    except MalformedRequest:
        return FALLBACK_MEDIA_TYPE, None
    if not is_media_type(kind):
        return FALLBACK_MEDIA_TYPE, None
    charset = params.get("charset")
    if charset is not None and not (
        0 < len(charset) <= _MAX_CHARSET and _TOKEN_CHARS.issuperset(charset)
    ):
        charset = None
    return kind, charset


def _one_of(params: dict[str, str], name: str) -> str | None:
    """The value of ``name`` from ``name`` and ``name*``, refusing two that differ."""
    plain = params.get(name)
    extended = params.get(name + "*")
    if plain is not None and extended is not None and plain != extended:
        raise MalformedRequest(f"parameters {name} and {name}* name different values")
    return extended if extended is not None else plain


def form_data_disposition(value: str) -> tuple[str, str | None]:
    """Check a part's ``Content-Disposition`` and return ``(name, raw_filename)``.

    The value must be ``form-data`` with a ``name``; ``raw_filename`` is ``None`` for a
    plain field. ``name``/``name*`` and ``filename``/``filename*`` must agree when both
    are given (``MalformedRequest`` otherwise); when only one is given it is used.
    """
    split = value.split('"', 4)
    if split[0] == "form-data; name=" and not split[-1]:
        # The exact shape browsers and HTTP libraries send, read with one split; the
        # full parser below gives the same answer for it when there is no escape.
        if len(split) == 3:
            if "\\" not in split[1]:
                return split[1], None
        elif len(split) == 5 and split[2] == "; filename=" and "\\" not in split[1] + split[3]:
            return split[1], split[3]
    kind, params = parse_options_header(value)
    if kind != "form-data":
        raise MalformedRequest(f"part Content-Disposition is {kind[:64]!r}, not form-data")
    name = _one_of(params, "name")
    if name is None:
        raise MalformedRequest("part Content-Disposition has no name")
    return name, _one_of(params, "filename")


def multipart_boundary(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` ``Content-Type``, checked (RFC 2046).

    Raises ``UnsupportedMediaType`` when the type is not ``multipart/form-data`` and
    ``MalformedRequest`` when the boundary is missing, empty, longer than 70
    characters, holds a character outside RFC 2046 ``bchars`` or ends in a space.
    """
    kind, params = parse_options_header(content_type)
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(f"expected multipart/form-data, not {kind[:64]!r}")
    boundary = params.get("boundary")
    if boundary is None:
        raise MalformedRequest("multipart/form-data without a boundary parameter")
    return check_boundary(boundary)


def check_boundary(boundary: str | bytes) -> bytes:
    """Return ``boundary`` as bytes if RFC 2046 allows it, else raise ``MalformedRequest``.

    A boundary is 1 to 70 characters of ``bchars`` (letters, digits and ``'()+_,-./:=?``
    and space) and does not end in a space.
    """
    if isinstance(boundary, bytes):
        boundary = boundary.decode("latin-1")
    if not 0 < len(boundary) <= _MAX_BOUNDARY:
        raise MalformedRequest("multipart boundary must be 1 to 70 characters long")
    if not _BOUNDARY_CHARS.issuperset(boundary) or boundary.endswith(" "):
        raise MalformedRequest("multipart boundary holds characters RFC 2046 does not allow")
    return boundary.encode("ascii")


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 fits in ``limit`` bytes."""
    # "ignore" only drops the character cut in half at the end.
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def safe_filename(raw: str) -> str:
    """The safe base name kept in ``UploadedFile.filename``.

    Keeps the part after the last ``/`` or ``\\`` and drops a Windows drive (``C:``);
    removes control characters (NUL, CR, LF...), format characters (bidirectional
    overrides and marks, zero-width characters), lone surrogates and line separators;
    strips surrounding white space; truncates to 255 bytes of UTF-8, keeping the
    extension and never splitting a character. Never returns ``""``, ``"."`` or
    ``".."``: those become ``"upload"``.
    """
    if (
        raw.isascii()
        and raw.isprintable()
        and "/" not in raw
        and "\\" not in raw
        and 0 < len(raw) <= _MAX_NAME_BYTES
        and raw[0] != " " != raw[-1]
        and raw[1:2] != ":"
        and raw not in (".", "..")
    ):
        return raw  # the usual case, already safe
    name = raw[max(raw.rfind("/"), raw.rfind("\\")) + 1 :]
    if name[1:2] == ":" and name[:1].isascii() and name[:1].isalpha():
        name = name[2:]  # a Windows drive, as in "C:evil.exe"
    if not name.isprintable():
        category = unicodedata.category
        name = "".join(ch for ch in name if category(ch) not in _UNSAFE_CATEGORIES)
    name = name.strip()
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        dot = name.rfind(".")
        ext = name[dot:] if dot > 0 else ""
        ext_size = len(ext.encode("utf-8"))
        if ext_size > _MAX_EXT_BYTES:
            ext, ext_size = "", 0
        stem = name[: len(name) - len(ext)]
        name = (_truncate_utf8(stem, _MAX_NAME_BYTES - ext_size) + ext).strip()
    if name in ("", ".", ".."):
        return _FALLBACK_NAME
    return name
