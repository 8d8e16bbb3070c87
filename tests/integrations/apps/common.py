"""What the framework test apps share: where files are kept, the image check."""

from __future__ import annotations

import io
import os
from pathlib import Path

IMAGE_LIMIT = 2_000_000
"""The largest avatar image the apps take (2 MB)."""


def storage() -> Path:
    """Where the apps keep files: ``$SPOOLUP_TEST_STORAGE`` (the server fixture sets it)."""
    return Path(os.environ.get("SPOOLUP_TEST_STORAGE", "."))


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of an image held in memory."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        width, height = image.size
    return width, height
