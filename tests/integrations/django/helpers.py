"""Bodies and clients shared by the Django tests."""

from __future__ import annotations

import io
import uuid
from typing import Any

from django.test import Client
from PIL import Image


def bmp(width: int, height: int, colour: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """An uncompressed picture: its size is known in advance (about 3 bytes a pixel)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="BMP")
    return out.getvalue()


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]
) -> tuple[bytes, str]:
    """A multipart body and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data, content_type) in files.items():
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"; filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class CsrfClient:
    """Django's test client with CSRF checks on, holding a token like a browser."""

    def __init__(self, **defaults: Any) -> None:
        self.client = Client(enforce_csrf_checks=True, **defaults)
        self.token = self.client.get("/csrf/").content.decode()

    def post(self, path: str, body: bytes, content_type: str, **extra: Any) -> Any:
        return self.client.generic(
            "POST", path, body, content_type=content_type, HTTP_X_CSRFTOKEN=self.token, **extra
        )

    def form(
        self,
        path: str,
        fields: dict[str, str],
        files: dict[str, tuple[str, bytes, str]],
        **extra: Any,
    ) -> Any:
        body, content_type = multipart(fields, files)
        return self.post(path, body, content_type, **extra)
