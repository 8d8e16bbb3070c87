"""Flask: ``request.files`` (Werkzeug's parser) against spoolup's extension."""

from __future__ import annotations

import functools
from typing import Any

from flask import Flask, abort, request

from benchmarks.frameworks.common import IMAGE_LIMIT, LIMIT, copy_hashing, dest_path, image_size
from spoolup import Limits
from spoolup.handlers import HashingHandler, MemoryFileHandler, TemporaryFileHandler
from spoolup.integrations.flask import Spoolup, upload_options


def native_app() -> Any:
    """Flask's own way: ``request.files`` (spooled past 500 KB), copied to its place."""
    app = Flask(__name__)

    @app.post("/backup")
    def backup() -> dict[str, str]:
        file = request.files["file"]
        return {"sha256": copy_hashing(file.stream, dest_path("flask"))}

    @app.post("/image")
    def image() -> dict[str, int]:
        request.max_content_length = IMAGE_LIMIT + 64 * 1024
        data = request.files["image"].read()
        if len(data) > IMAGE_LIMIT:
            abort(413)
        width, height = image_size(data)
        return {"width": width, "height": height}

    app.post("/limited")(limited)
    return app


def limited() -> dict[str, int]:
    """The same view in both apps: Flask's own per-request limit, then the form."""
    request.max_content_length = LIMIT
    return {"files": len(request.files)}


def spoolup_app() -> Any:
    """The same routes, ``request.files`` filled by ``spoolup.integrations.flask.Spoolup``."""
    app = Flask(__name__)
    Spoolup(app)

    @app.post("/backup")
    @upload_options(handlers=[functools.partial(HashingHandler, "sha256"), TemporaryFileHandler])
    def backup() -> dict[str, str]:
        file = request.files["file"]
        file.save(dest_path("flask-spoolup"))
        return {"sha256": file.spoolup.hashes["sha256"]}

    @app.post("/image")
    @upload_options(limits=Limits(max_file_size=IMAGE_LIMIT), handlers=[MemoryFileHandler])
    def image() -> dict[str, int]:
        width, height = image_size(request.files["image"].read())
        return {"width": width, "height": height}

    app.post("/limited")(limited)
    return app
