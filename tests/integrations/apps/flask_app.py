"""A Flask app as its users write one: ``request.files`` and ``request.form``, filled by spoolup."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from flask import Flask, request

from spoolup import Limits
from spoolup.handlers import HashingHandler, MemoryFileHandler, SpooledFileHandler
from spoolup.integrations.flask import Spoolup, upload_options
from tests.integrations.apps.common import IMAGE_LIMIT, image_size, storage

spoolup = Spoolup()


def make_app() -> Flask:
    """The app (``gunicorn 'tests.integrations.apps.flask_app:make_app()'``)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 128 * 1024 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = 1000
    app.config["MAX_FORM_PARTS"] = 5
    spoolup.init_app(app)

    @app.post("/avatar")
    @upload_options(limits=Limits(max_file_size=IMAGE_LIMIT), handlers=[MemoryFileHandler])
    def avatar() -> dict[str, Any]:
        image = request.files["image"]
        width, height = image_size(image.read())
        return {
            "title": request.form.get("title"),
            "width": width,
            "height": height,
            "in_memory": image.spoolup.in_memory,
            "mimetype": image.mimetype,
            "content_length": image.content_length,
        }

    @app.post("/backups")
    @upload_options(handlers=[functools.partial(HashingHandler, "sha256"), SpooledFileHandler])
    def backup() -> dict[str, Any]:
        file = request.files["backup"]
        assert file.filename is not None
        file.save(storage() / file.filename)
        return {
            "name": file.filename,
            "size": file.content_length,
            "sha256": file.spoolup.hashes["sha256"],
        }

    @app.post("/copy")
    def copy() -> dict[str, Any]:
        file = request.files["doc"]
        with (storage() / "copy.bin").open("wb") as out:
            file.save(out)  # a file object: copied
        return {"digest": hashlib.sha256((storage() / "copy.bin").read_bytes()).hexdigest()}

    @app.post("/small")
    def small() -> dict[str, Any]:
        request.max_content_length = 1000  # Flask 3.1's per-request override
        return {"fields": request.form.to_dict(), "files": list(request.files)}

    @app.post("/stream-first")
    def stream_first() -> dict[str, Any]:
        request.stream.read(10)
        return {"files": list(request.files)}

    @app.post("/data-first")
    def data_first() -> dict[str, Any]:
        data = request.get_data()
        return {"length": len(data), "fields": request.form.to_dict()}

    @app.errorhandler(415)
    def unsupported(error: Exception) -> tuple[dict[str, str], int]:
        return {"error": str(getattr(error, "description", error))}, 415

    return app
