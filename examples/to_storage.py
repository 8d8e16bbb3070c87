"""Straight to storage: every uploaded file streams into a folder or an S3 bucket.

A pure ASGI application::

    STORAGE=/srv/uploads uvicorn examples.to_storage:app
    STORAGE=s3://my-bucket/uploads uvicorn examples.to_storage:app   # AWS_* from the env
    curl -F file=@report.pdf -F file=@photo.jpg http://127.0.0.1:8000/
    [{"key": "3f2a…", "filename": "report.pdf", "size": 48213, "sha256": "…", …}, …]

No temp file: ``StorageHandler`` writes each chunk to the storage writer as it
arrives (a temp name beside the target, or an S3 multipart upload) and hashes it on
the way. A file over ``MAX_FILE_SIZE`` (5 GiB, a constant below, not a variable;
``make_app(storage, max_file_size=...)`` takes another) is refused with 413 the moment
it crosses the limit, and whatever was written of it, and of the files before it, is
removed (local) or aborted (S3). Keys are random ids, never the client's file name.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import spoolup.asgi
from spoolup import Limits, UploadError
from spoolup.handlers import SizeLimitHandler
from spoolup.storage import LocalStorage, Storage, StorageError, StorageHandler, StoredFile

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_FILE_SIZE = 5 * 1024**3
LIMITS = Limits(max_file_size=MAX_FILE_SIZE, max_body_size=4 * MAX_FILE_SIZE, max_files=20)


def open_storage(where: str) -> Storage:
    """``s3://bucket/prefix`` for S3 (credentials from the AWS_* variables), else a folder."""
    if where.startswith("s3://"):
        from spoolup.storage import S3Storage

        bucket, _, prefix = where.removeprefix("s3://").partition("/")
        return S3Storage(bucket, prefix)
    return LocalStorage(where)


async def respond(send: Send, status: int, payload: object) -> None:
    """Send ``payload`` as a JSON response."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def record(file: StoredFile) -> dict[str, Any]:
    """What the client is told about one stored file."""
    return {
        "key": file.key,
        "field": file.field_name,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.size,
        "sha256": file.hashes["sha256"],
    }


def make_app(storage: Storage, max_file_size: int = MAX_FILE_SIZE) -> ASGIApp:
    """The application, storing every file part of ``POST /`` in ``storage``."""

    # Factories: every request gets fresh handlers.
    handlers = [lambda: SizeLimitHandler(max_file_size), lambda: StorageHandler(storage)]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST" or scope["path"] != "/":
            await respond(send, 404, {"error": "POST / with files"})
            return
        try:
            async with await spoolup.asgi.parse_form(
                scope, receive, limits=LIMITS, handlers=handlers
            ) as form:
                files = [f for _, f in form.files.multi_items() if isinstance(f, StoredFile)]
                records = [record(f) for f in files]
        except UploadError as exc:
            await respond(send, exc.status, {"error": exc.message})
            return
        except StorageError as exc:
            await respond(send, exc.status, {"error": exc.message})
            return
        await respond(send, 201, records)

    return app


@functools.cache
def default_app() -> ASGIApp:
    """The application over ``$STORAGE`` (``./uploads`` by default), made once."""
    return make_app(open_storage(os.environ.get("STORAGE", "uploads")))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point for uvicorn; the storage is opened on the first request."""
    await default_app()(scope, receive, send)
