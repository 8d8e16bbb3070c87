"""The errors spoolup raises for bad input, and the HTTP status each one answers with.

Every error derives from :class:`UploadError`, which carries ``.status``: the HTTP
status a server should send back. Nothing else escapes for bad input.

::

    UploadError                      .status, .message
     ├── MalformedRequest            400  the body or a header does not follow the format
     ├── RequestTooLarge             413  the whole body crossed Limits.max_body_size
     │    ├── FileTooLarge           413  one file crossed Limits.max_file_size
     │    └── TooManyParts           413  too many files, fields or header lines
     ├── UnsupportedMediaType        415  not a form, or a file of a type not allowed
     └── UploadAborted               400  the client went away before the body ended
"""

from __future__ import annotations

__all__ = [
    "FileTooLarge",
    "MalformedRequest",
    "RequestTooLarge",
    "TooManyParts",
    "UnsupportedMediaType",
    "UploadAborted",
    "UploadError",
]


class UploadError(Exception):
    """Base of every error caused by what a client sent.

    ``status`` is the HTTP status to answer with; ``message`` says what was wrong in
    words a client can act on (for a limit, its name and value).
    """

    status: int = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status})"


class MalformedRequest(UploadError):
    """The body or one of its headers does not follow the format (400)."""

    status = 400


class RequestTooLarge(UploadError):
    """A size or count limit was crossed (413); raised the moment it is crossed."""

    status = 413

    def __init__(self, message: str, *, limit: str = "", value: int = 0) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value

    @classmethod
    def for_limit(cls, limit: str, value: int, what: str) -> RequestTooLarge:
        """Build the error for ``Limits.<limit>`` set to ``value``, crossed by ``what``."""
        return cls(f"{what} exceeds the limit {limit}={value}", limit=limit, value=value)


class FileTooLarge(RequestTooLarge):
    """One file is larger than ``Limits.max_file_size`` (413)."""


class TooManyParts(RequestTooLarge):
    """Too many files, fields or header lines in the body (413)."""


class UnsupportedMediaType(UploadError):
    """The body is not a form spoolup parses, or a file's type is not allowed (415)."""

    status = 415


class UploadAborted(UploadError):
    """The client disconnected before the body was complete (400)."""

    status = 400
