"""FastAPI: ``UploadFile`` parameters (Starlette's parser) against spoolup's form dependency."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.
import asyncio
import functools
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, UploadFile

from benchmarks.frameworks.common import IMAGE_LIMIT, LIMIT, copy_hashing, dest_path, image_size
from spoolup import Form, Limits
from spoolup.handlers import HashingHandler, MemoryFileHandler, TemporaryFileHandler
from spoolup.integrations.fastapi import form
from spoolup.integrations.starlette import install


def native_app() -> Any:
    """FastAPI's own way: ``UploadFile`` (spooled past 1 MiB), copied to its place."""
    app = FastAPI()

    @app.post("/backup")
    async def backup(file: UploadFile) -> dict[str, str]:
        digest = await asyncio.to_thread(copy_hashing, file.file, dest_path("fastapi"))
        return {"sha256": digest}

    @app.post("/image")
    async def image(image: UploadFile) -> dict[str, int]:
        if image.size is None or image.size > IMAGE_LIMIT:
            raise HTTPException(413, "image too large")
        width, height = image_size(await image.read())
        return {"width": width, "height": height}

    @app.post("/limited", max_body_size=LIMIT)
    async def limited(file: UploadFile) -> dict[str, int | None]:
        return {"size": file.size}

    return app


def spoolup_app() -> Any:
    """The same routes with ``spoolup.integrations.fastapi.form``."""
    app = FastAPI()
    install(app)
    backup_form = form(
        handlers=[functools.partial(HashingHandler, "sha256"), TemporaryFileHandler],
        files=["file"],
    )
    image_form = form(
        limits=Limits(max_file_size=IMAGE_LIMIT), handlers=[MemoryFileHandler], files=["image"]
    )

    @app.post("/backup")
    async def backup(data: Annotated[Form, Depends(backup_form)]) -> dict[str, str]:
        file = data.files["file"]
        await file.asave(dest_path("fastapi-spoolup"))
        return {"sha256": file.hashes["sha256"]}

    @app.post("/image")
    async def image(data: Annotated[Form, Depends(image_form)]) -> dict[str, int]:
        width, height = image_size(data.files["image"].read())
        return {"width": width, "height": height}

    @app.post("/limited", max_body_size=LIMIT)
    async def limited(data: Annotated[Form, Depends(form())]) -> dict[str, int]:
        return {"files": len(data.files)}

    return app
