"""A Litestar app as its users write one, taking a spoolup ``Form`` from the plugin."""

# No ``from __future__ import annotations``: Litestar reads the handlers' annotations.
import functools
from typing import Annotated, Any

from litestar import Litestar, Request, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body

from spoolup import Form, Limits
from spoolup.handlers import HashingHandler, MemoryFileHandler, SpooledFileHandler
from spoolup.integrations.litestar import SpoolupPlugin, upload_options
from tests.integrations.apps.common import IMAGE_LIMIT, image_size, storage


@post(
    "/avatar",
    status_code=200,
    opt=upload_options(limits=Limits(max_file_size=IMAGE_LIMIT), handlers=[MemoryFileHandler]),
)
async def avatar(form: NamedDependency[Form]) -> dict[str, Any]:
    image = form.files["image"]
    width, height = image_size(image.read())
    return {
        "title": form.fields.get("title"),
        "width": width,
        "height": height,
        "in_memory": image.in_memory,
    }


@post(
    "/backups",
    status_code=200,
    request_max_body_size=128 * 1024 * 1024,
    opt=upload_options(handlers=[functools.partial(HashingHandler, "sha256"), SpooledFileHandler]),
)
async def backup(form: NamedDependency[Form]) -> dict[str, Any]:
    file = form.files["backup"]
    kept = await file.asave(storage() / file.filename)
    return {"name": kept.name, "size": file.size, "sha256": file.hashes["sha256"]}


@post("/limited", status_code=200, request_max_body_size=1000)
async def limited(form: NamedDependency[Form]) -> dict[str, Any]:
    return {"fields": dict(form.fields)}


@post("/consumed", status_code=200)
async def consumed(
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    form: NamedDependency[Form],
) -> dict[str, Any]:
    return {}


async def read_body(request: Request[Any, Any, Any]) -> None:
    await request.body()


@post("/read-first", status_code=200, before_request=read_body)
async def read_first(form: NamedDependency[Form]) -> dict[str, Any]:
    return {}


def make_app(debug: bool = False) -> Litestar:
    """The app (``uvicorn --factory``); ``debug`` shows a bug's message in its 500."""
    handlers = [avatar, backup, limited, consumed, read_first]
    return Litestar(
        handlers,
        plugins=[SpoolupPlugin()],
        multipart_form_part_limit=5,
        debug=debug,
        logging_config=None,
    )
