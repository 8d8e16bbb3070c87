"""``POST /api/inspect/image``: look at an image in memory and say whether it is all white.

The image arrives in the form field ``image``, is held in memory only (the form is
parsed with spoolup's memory handler and limits capped at the configured size), is
decoded with Pillow in a worker thread, and is gone when the answer is sent: nothing
is ever written to disk.

What "all white" means: every pixel is pure white *and* fully opaque. A transparent
pixel has no colour of its own (it shows whatever lies behind it), so an image with any
pixel not fully opaque is not all white, even if its colour channels read 255. Per mode:

- ``1``, ``L``, ``RGB``, ``CMYK`` and the other 8-bit modes: converted to ``RGBA``; every
  channel must be 255 (palette images use their palette and its transparency).
- ``I;16`` and its variants, and ``I`` (how Pillow opens 16-bit greyscale): 65535.
- ``F`` (32-bit float): 1.0.

For an animated image (GIF, APNG, WebP) only the first frame is judged.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

from spoolup.errors import MalformedRequest, RequestTooLarge, UnsupportedMediaType

__all__ = ["inspect_image"]

_WHITE_16 = 65535

# Formats decoded in process with no helper program and no temp file (EPS, for one,
# runs Ghostscript over a temp file: it is not on this list).
_SAFE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "ICO", "PPM", "TGA", "QOI")


def _formats() -> list[str]:
    Image.init()
    return [name for name in _SAFE_FORMATS if name in Image.OPEN]


def _all_white(image: Image.Image) -> bool:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        return _extrema_all(image, _WHITE_16)
    if mode == "F":
        return _extrema_all(image, 1.0)
    if mode != "RGBA":
        image = image.convert("RGBA")
    return _extrema_all(image, 255)


def _extrema_all(image: Image.Image, white: float) -> bool:
    extrema: Any = image.getextrema()
    # One band gives (min, max); several give a tuple of (min, max) pairs.
    bands = [extrema] if not isinstance(extrema[0], tuple) else list(extrema)
    return all(low >= white for low, _high in bands)


def inspect_image(data: bytes, *, max_pixels: int) -> dict[str, Any]:
    """Decode ``data`` as an image and describe it: width, height, format, all_white.

    Raises :class:`UnsupportedMediaType` (415) if the bytes are not an image Pillow
    reads, :class:`RequestTooLarge` (413) if the image claims more than ``max_pixels``
    pixels (checked before decoding, so a small file cannot claim a huge canvas), and
    :class:`MalformedRequest` (400) if it is an image but broken. Performs no disk I/O.
    """
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns; ours, below, is stricter and raises. Its
            # other warnings (a truncated TIFF, corrupt EXIF) must not become errors
            # where warnings are errors: the damage is reported by the exceptions below.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=_formats())
    except UnidentifiedImageError as exc:
        msg = "the file is not an image this server can read"
        raise UnsupportedMediaType(msg) from exc
    except Image.DecompressionBombError as exc:
        raise RequestTooLarge.for_limit("inspect_max_pixels", max_pixels, "image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        msg = "the image is damaged and cannot be read"
        raise MalformedRequest(msg) from exc
    with image:
        width, height = image.size
        if width * height > max_pixels:
            what = f"image of {width}x{height} pixels"
            raise RequestTooLarge.for_limit("inspect_max_pixels", max_pixels, what)
        image_format = image.format or "unknown"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image.load()
            white = _all_white(image)
        except Image.DecompressionBombError as exc:
            raise RequestTooLarge.for_limit("inspect_max_pixels", max_pixels, "image") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            msg = "the image is damaged and cannot be read"
            raise MalformedRequest(msg) from exc
    return {"width": width, "height": height, "format": image_format, "all_white": white}
