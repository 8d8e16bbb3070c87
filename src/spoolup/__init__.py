"""spoolup: receive file uploads in Python web applications.

Small files stay in memory, large ones are spooled to disk or streamed straight to
storage, oversized ones are refused early; the application sees one ``UploadedFile``.
"""

from spoolup.errors import (
    FileTooLarge,
    MalformedRequest,
    RequestTooLarge,
    TooManyParts,
    UnsupportedMediaType,
    UploadAborted,
    UploadError,
)
from spoolup.limits import Limits

__all__ = [
    "FileTooLarge",
    "Limits",
    "MalformedRequest",
    "RequestTooLarge",
    "TooManyParts",
    "UnsupportedMediaType",
    "UploadAborted",
    "UploadError",
]

__version__ = "0.1.0"
