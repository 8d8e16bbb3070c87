"""Small and processed in place: is the uploaded picture completely white?

A pure ASGI application (run it with ``uvicorn examples.white_image:app``)::

    curl -F image=@photo.png http://127.0.0.1:8000/
    {"width": 640, "height": 480, "format": "PNG", "all_white": false}

The picture is received in memory only (``MemoryFileHandler``), checked by its first
bytes (``ContentTypeHandler``), decoded with Pillow and forgotten: nothing ever
touches the disk. A picture over 2 MiB is refused with 413 as soon as that is known
(before a byte of the body when ``Content-Length`` says so, otherwise the moment the
limit is crossed), anything that is not an image with 415.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from PIL import Image, UnidentifiedImageError

import spoolup.asgi
from spoolup import Limits, UnsupportedMediaType, UploadError
from spoolup.handlers import ContentTypeHandler, HandlerSpec, MemoryFileHandler

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_IMAGE = 2 * 1024 * 1024
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them
# Room for the multipart framing around the one file, and nothing else.
LIMITS = Limits(
    max_file_size=MAX_IMAGE,
    max_body_size=MAX_IMAGE + 64 * 1024,
    max_files=1,
    max_fields=8,
    max_field_size=1024,
)
HANDLERS: list[HandlerSpec] = [
    functools.partial(ContentTypeHandler, ["image/*"]),
    MemoryFileHandler,
]


def inspect_image(data: bytes) -> dict[str, Any]:
    """Width, height, format and whether every pixel is white; 415 if not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UploadError(f"image of {width}x{height} pixels is too large", status=413)
            rgb = image.convert("RGB")
            extrema: tuple[tuple[int, int], ...] = rgb.getextrema()  # type: ignore[assignment]
            all_white = all(low == 255 for low, _ in extrema)
            return {
                "width": width,
                "height": height,
                "format": image.format,
                "all_white": all_white,
            }
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedMediaType(f"not a readable image: {exc}") from None


async def respond(send: Send, status: int, payload: dict[str, Any]) -> None:
    """Send ``payload`` as a JSON response."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """POST / with an ``image`` field: JSON about the picture."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/":
        await respond(send, 404, {"error": "not found"})
        return
    if scope["method"] != "POST":
        await respond(send, 405, {"error": "use POST"})
        return
    try:
        async with spoolup.asgi.parse_form(
            scope, receive, limits=LIMITS, handlers=HANDLERS
        ) as form:
            upload = form.files.get("image")
            if upload is None:
                await respond(send, 400, {"error": "no file in the field 'image'"})
                return
            # Decoding is CPU work: keep it off the event loop.
            result = await asyncio.to_thread(inspect_image, upload.read())
    except UploadError as exc:
        await respond(send, exc.status, {"error": exc.message})
        return
    await respond(send, 200, result)
