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
from spoolup.files import UploadedFile
from spoolup.form import Form, aparse_form, areceive_file, parse_form, receive_file
from spoolup.handlers import UploadHandler
from spoolup.limits import Limits

__all__ = [
    "FileTooLarge",
    "Form",
    "Limits",
    "MalformedRequest",
    "RequestTooLarge",
    "TooManyParts",
    "UnsupportedMediaType",
    "UploadAborted",
    "UploadError",
    "UploadHandler",
    "UploadedFile",
    "aparse_form",
    "areceive_file",
    "parse_form",
    "receive_file",
]

__version__ = "0.1.0"
