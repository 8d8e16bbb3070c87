"""Large and kept: a backup is streamed to a temp file, then moved into a folder.

A pure ASGI application (``BACKUP_DIR=/srv/backups uvicorn examples.backup:app``)::

    curl -F backup=@site.tar.gz http://127.0.0.1:8000/
    {"filename": "site.tar.gz", "size": 2147483648, "sha256": "…"}

The file never sits in memory: ``TemporaryFileHandler`` writes each chunk to a temp
file as it arrives (in a worker thread, off the event loop) while ``HashingHandler``
hashes it. At the end ``save`` moves the temp file into the folder by rename: no copy
when the temp dir is on the same filesystem (set ``TMPDIR`` inside the backup folder's
filesystem to be sure), an atomic chunked copy otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import spoolup.asgi
from spoolup import Limits, UploadedFile, UploadError
from spoolup.handlers import HashingHandler, TemporaryFileHandler

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LIMITS = Limits(max_file_size=64 * 1024**3, max_body_size=64 * 1024**3 + 1024**2, max_files=1)
HANDLERS = [HashingHandler, TemporaryFileHandler]


async def respond(send: Send, status: int, payload: dict[str, Any]) -> None:
    """Send ``payload`` as a JSON response."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def store(backup: UploadedFile, folder: Path) -> Path:
    """Move the backup into ``folder`` (renamed, not copied, on one filesystem)."""
    folder.mkdir(parents=True, exist_ok=True)
    return backup.save(folder)


def make_app(folder: Path) -> ASGIApp:
    """The application, keeping backups in ``folder`` (created when first needed)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST" or scope["path"] != "/":
            await respond(send, 404, {"error": "POST / with a 'backup' file"})
            return
        try:
            async with await spoolup.asgi.parse_form(
                scope, receive, limits=LIMITS, handlers=HANDLERS
            ) as form:
                backup = form.files.get("backup")
                if backup is None:
                    await respond(send, 400, {"error": "no file in the field 'backup'"})
                    return
                saved = await asyncio.to_thread(store, backup, folder)
        except UploadError as exc:
            await respond(send, exc.status, {"error": exc.message})
            return
        record = {"filename": saved.name, "size": backup.size, "sha256": backup.hashes["sha256"]}
        await respond(send, 201, record)

    return app


app = make_app(Path(os.environ.get("BACKUP_DIR", "backups")))
