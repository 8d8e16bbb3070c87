from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from spoolup.errors import MalformedRequest, RequestTooLarge, UnsupportedMediaType
from spoolup.server.inspect import inspect_image


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("mode", "colour", "fmt", "white"),
    [
        ("RGB", (255, 255, 255), "PNG", True),
        ("RGB", (255, 255, 254), "PNG", False),
        ("RGB", (255, 255, 255), "BMP", True),
        ("RGB", (255, 255, 255), "GIF", True),
        ("L", 255, "PNG", True),
        ("L", 254, "PNG", False),
        ("1", 1, "PNG", True),
        ("1", 0, "PNG", False),
        ("RGBA", (255, 255, 255, 255), "PNG", True),
        ("RGBA", (255, 255, 255, 254), "PNG", False),  # not fully opaque
        ("RGBA", (255, 255, 255, 0), "PNG", False),  # transparent: no colour at all
        ("LA", (255, 255), "PNG", True),
        ("LA", (255, 0), "PNG", False),
        ("I;16", 65535, "PNG", True),
        ("I;16", 65534, "PNG", False),
        ("I", 65535, "TIFF", True),
        ("I", 300, "TIFF", False),  # would clip to 255 if converted to 8 bits
        ("F", 1.0, "TIFF", True),
        ("F", 0.5, "TIFF", False),
        ("CMYK", (0, 0, 0, 0), "TIFF", True),
        ("CMYK", (0, 0, 0, 10), "TIFF", False),
    ],
)
def test_modes(mode: str, colour: object, fmt: str, white: bool) -> None:
    data = encode(Image.new(mode, (7, 5), colour), fmt)  # type: ignore[arg-type]
    result = inspect_image(data, max_pixels=10_000)
    assert result == {"width": 7, "height": 5, "format": fmt, "all_white": white}


def test_one_dark_pixel() -> None:
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    image.putpixel((63, 63), (255, 0, 255))
    assert inspect_image(encode(image), max_pixels=10_000)["all_white"] is False


def test_palette_with_transparency() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 255, 255] * 256)
    assert inspect_image(encode(image), max_pixels=100)["all_white"] is True
    assert inspect_image(encode(image, transparency=0), max_pixels=100)["all_white"] is False


def test_jpeg_white() -> None:
    data = encode(Image.new("RGB", (16, 16), "white"), "JPEG", quality=100)
    result = inspect_image(data, max_pixels=1000)
    assert result["format"] == "JPEG"
    assert result["all_white"] is True


def test_not_an_image() -> None:
    with pytest.raises(UnsupportedMediaType):
        inspect_image(b"%PDF-1.4 not an image", max_pixels=100)
    with pytest.raises(UnsupportedMediaType):
        inspect_image(b"", max_pixels=100)


def test_eps_is_not_decoded() -> None:
    # EPS would run Ghostscript over a temp file: not on the list of formats read.
    with pytest.raises(UnsupportedMediaType):
        inspect_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n", max_pixels=100)


def test_too_many_pixels_before_decoding() -> None:
    data = encode(Image.new("1", (2000, 2000), 1))
    assert len(data) < 5000  # small file, big canvas
    with pytest.raises(RequestTooLarge, match="inspect_max_pixels=1000000"):
        inspect_image(data, max_pixels=1_000_000)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_huge_claimed_canvas_is_refused_not_decoded() -> None:
    # A header claiming 100000 x 100000 pixels and no data: Pillow's own bomb check.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")
    with pytest.raises(RequestTooLarge):
        inspect_image(data, max_pixels=40_000_000)


def test_truncated_image() -> None:
    data = encode(Image.new("RGB", (300, 300), (10, 200, 30)))
    with pytest.raises(MalformedRequest):
        inspect_image(data[: len(data) // 2], max_pixels=10**6)


def test_damaged_header() -> None:
    data = bytearray(encode(Image.new("RGB", (3, 3), "white")))
    data[16:24] = b"\xff" * 8  # width and height out of range
    with pytest.raises((MalformedRequest, RequestTooLarge, UnsupportedMediaType)):
        inspect_image(bytes(data), max_pixels=10**6)
