"""The media type a file's name suggests, for a file sent without a declared type."""

from __future__ import annotations

import mimetypes

from spoolup.headers import FALLBACK_MEDIA_TYPE

__all__ = ["media_type_of_name"]

# The type of the bytes themselves when a name ends in a compression suffix: the
# stored bytes are the compressed stream, so they are served as that (never as the
# inner type, which would tell a browser to read gzip bytes as a tar or a text).
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


def media_type_of_name(filename: str) -> str:
    """The media type of a file named ``filename``, from its suffixes.

    The outermost compression decides: ``backup.tar.gz`` is ``application/gzip``, not
    ``application/x-tar``. An unknown name is ``application/octet-stream``.
    """
    # guess_type takes a URL: "data:,photo.png" would be a data: URL (text/plain).
    # Behind "./" the name is a path whatever it holds (a scheme has no "/").
    kind, encoding = mimetypes.guess_type(f"./{filename}")
    if encoding is not None:
        return _ENCODING_TYPES.get(encoding, FALLBACK_MEDIA_TYPE)
    return kind or FALLBACK_MEDIA_TYPE
