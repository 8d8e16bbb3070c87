"""What the framework benchmark apps share: limits, where files go, the image check."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path
from typing import IO

LIMIT = 2 * 1000 * 1000
"""The body limit of ``POST /limited`` (2 MB)."""
IMAGE_LIMIT = 2 * 1000 * 1000
"""The largest image ``POST /image`` takes (2 MB)."""
CHUNK = 1024 * 1024


def dest_path(prefix: str) -> Path:
    """A new path in the folder where the benchmark wants kept files (``$BENCH_DEST``)."""
    return Path(os.environ["BENCH_DEST"]) / f"{prefix}-{time.monotonic_ns()}"


def copy_hashing(source: IO[bytes], dest: Path) -> str:
    """Copy ``source`` from its start to ``dest`` in 1 MiB chunks; its sha256 (hex)."""
    digest = hashlib.sha256()
    source.seek(0)
    with dest.open("wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def image_size(data: bytes) -> tuple[int, int]:
    """The width and height of an image held in memory (Pillow reads its header)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        width, height = image.size
    return width, height
