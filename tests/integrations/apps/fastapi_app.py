"""A FastAPI app as its users write one, receiving uploads with spoolup."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.
import functools
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi import Form as FormParam
from fastapi.responses import StreamingResponse

from spoolup import Form, Limits, UploadedFile
from spoolup.handlers import HashingHandler, MemoryFileHandler, SpooledFileHandler
from spoolup.integrations.fastapi import form, upload_file
from spoolup.integrations.starlette import install, parse_form
from tests.integrations.apps.common import IMAGE_LIMIT, image_size, storage

app = FastAPI(form_limits={"max_fields": 20})
install(app)

avatar_form = form(
    limits=Limits(max_file_size=IMAGE_LIMIT),
    handlers=[MemoryFileHandler],
    files=["image"],
    fields=["title"],
)
backup_form = form(handlers=[functools.partial(HashingHandler, "sha256"), SpooledFileHandler])


@app.post("/avatar")
async def avatar(data: Annotated[Form, Depends(avatar_form)]) -> dict[str, Any]:
    image = data.files["image"]
    width, height = image_size(image.read())
    return {
        "title": data.fields.get("title"),
        "width": width,
        "height": height,
        "in_memory": image.in_memory,
        "on_disk": image.path is not None,
    }


@app.post("/backups")
async def backup(data: Annotated[Form, Depends(backup_form)]) -> dict[str, Any]:
    file = data.files["backup"]
    kept = await file.asave(storage() / file.filename)
    return {"name": kept.name, "size": file.size, "sha256": file.hashes["sha256"]}


@app.post("/echo")
async def echo(data: Annotated[Form, Depends(form())]) -> StreamingResponse:
    # The form is closed after the response: the file streams back from its temp file.
    return StreamingResponse(data.files["file"].achunks())


@app.post("/limited", max_body_size=1_000_000)
async def limited(data: Annotated[Form, Depends(form())]) -> dict[str, Any]:
    return {"fields": dict(data.fields)}


@app.post("/few", form_limits={"max_files": 1, "max_part_size": 10})
async def few(data: Annotated[Form, Depends(form())]) -> dict[str, Any]:
    return {"fields": len(data.fields), "files": len(data.files)}


@app.post("/consumed")
async def consumed(
    title: Annotated[str, FormParam()], data: Annotated[Form, Depends(form())]
) -> dict[str, Any]:
    return {"title": title}


@app.post("/read-first")
async def read_first(request: Request) -> dict[str, Any]:
    await request.body()
    async with await parse_form(request):
        return {}


@app.put("/files/{filename}")
async def put_file(
    file: Annotated[UploadedFile, Depends(upload_file(handlers=[MemoryFileHandler]))],
) -> dict[str, Any]:
    return {"filename": file.filename, "size": file.size, "content": file.read().decode()}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


def make_app() -> FastAPI:
    """The app, for ``uvicorn --factory``."""
    return app
