"""Litestar: an ``UploadFile`` body (Litestar's parser) against spoolup's plugin."""

# No ``from __future__ import annotations``: Litestar reads the handlers' annotations.
import asyncio
import functools
from typing import Annotated, Any

from litestar import Litestar, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body

from benchmarks.frameworks.common import IMAGE_LIMIT, LIMIT, copy_hashing, dest_path, image_size
from spoolup import Form, Limits
from spoolup.handlers import HashingHandler, MemoryFileHandler, TemporaryFileHandler
from spoolup.integrations.litestar import SpoolupPlugin, upload_options

Multipart = Body(media_type=RequestEncodingType.MULTI_PART)


def native_app() -> Any:
    """Litestar's own way: an ``UploadFile`` body (spooled past 1 MiB), copied to its place."""

    @post("/backup", request_max_body_size=None)
    async def backup(data: Annotated[UploadFile, Multipart]) -> dict[str, str]:
        digest = await asyncio.to_thread(copy_hashing, data.file, dest_path("litestar"))
        return {"sha256": digest}

    @post("/image")
    async def image(data: Annotated[UploadFile, Multipart]) -> dict[str, int]:
        content = await data.read()
        if len(content) > IMAGE_LIMIT:
            raise HTTPException(status_code=413, detail="image too large")
        width, height = image_size(content)
        return {"width": width, "height": height}

    @post("/limited", request_max_body_size=LIMIT)
    async def limited(data: Annotated[UploadFile, Multipart]) -> dict[str, str]:
        return {"filename": data.filename}

    return Litestar([backup, image, limited])


def spoolup_app() -> Any:
    """The same handlers taking a spoolup ``Form`` from ``SpoolupPlugin``."""

    @post(
        "/backup",
        request_max_body_size=None,
        opt=upload_options(
            handlers=[functools.partial(HashingHandler, "sha256"), TemporaryFileHandler]
        ),
    )
    async def backup(form: NamedDependency[Form]) -> dict[str, str]:
        file = form.files["file"]
        await file.asave(dest_path("litestar-spoolup"))
        return {"sha256": file.hashes["sha256"]}

    @post(
        "/image",
        opt=upload_options(limits=Limits(max_file_size=IMAGE_LIMIT), handlers=[MemoryFileHandler]),
    )
    async def image(form: NamedDependency[Form]) -> dict[str, int]:
        width, height = image_size(form.files["image"].read())
        return {"width": width, "height": height}

    @post("/limited", request_max_body_size=LIMIT)
    async def limited(form: NamedDependency[Form]) -> dict[str, int]:
        return {"files": len(form.files)}

    return Litestar([backup, image, limited], plugins=[SpoolupPlugin()])
