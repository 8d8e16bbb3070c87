"""The Flask extension: through Flask's test client and over a real gunicorn."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage

from spoolup.integrations.flask import Spoolup, SpoolupFileStorage
from tests.integrations.apps.flask_app import make_app
from tests.integrations.servers import (
    Server,
    check_backup,
    check_client_leaving,
    check_image_in_memory,
    declare_only,
    multipart,
    png,
    serve,
)

IMAGE = png()
BOUNDARY = "flaskTestBoundary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flask:
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("SPOOLUP_TEST_STORAGE", str(tmp_path))
    app = make_app()
    app.testing = True  # errors that are bugs propagate to the test
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(
        "gunicorn", "tests.integrations.apps.flask_app:make_app", tmp_path_factory.mktemp("fl")
    ) as running:
        yield running


def test_request_files_are_file_storages_from_spoolup(client: FlaskClient) -> None:
    body = multipart(BOUNDARY, ("image", "../me.png", IMAGE), ("title", None, b"me"))
    body = body.replace(b"application/octet-stream", b"image/png")
    response = client.post("/avatar", data=body, content_type=FORM)
    assert response.status_code == 200
    assert response.get_json() == {
        "title": "me",
        "width": 800,
        "height": 800,
        "in_memory": True,
        "mimetype": "image/png",
        "content_length": len(IMAGE),
    }
    too_big = IMAGE + b"\0" * (2_000_001 - len(IMAGE))
    body = multipart(BOUNDARY, ("image", "big.png", too_big))
    response = client.post("/avatar", data=body, content_type=FORM)
    assert response.status_code == 413
    assert b"max_file_size=2000000" in response.data


def test_save_to_a_path_moves_and_to_a_file_copies(app: Flask, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    client = app.test_client()
    # Bodies built here: Werkzeug's test client leaves its own temp file of a large
    # files= upload open.
    body = multipart(BOUNDARY, ("backup", "site.tar", data))
    response = client.post("/backups", data=body, content_type=FORM)
    digest = hashlib.sha256(data).hexdigest()
    assert response.get_json() == {"name": "site.tar", "size": len(data), "sha256": digest}
    assert (tmp_path / "site.tar").read_bytes() == data
    assert os.listdir(tmp_path / "tmp") == []  # moved, not copied and left
    body = multipart(BOUNDARY, ("doc", "doc.bin", data))
    response = client.post("/copy", data=body, content_type=FORM)
    assert response.get_json() == {"digest": digest}
    assert os.listdir(tmp_path / "tmp") == []  # closed at the end of the request


def test_flask_limits_apply(client: FlaskClient) -> None:
    # MAX_FORM_MEMORY_SIZE: one text value.
    response = client.post("/small", data={"a": "x" * 1001})
    assert response.status_code == 413
    # MAX_FORM_PARTS: parts of any kind together.
    fields = {f"f{i}": "v" for i in range(3)}
    files = {f"d{i}": (io.BytesIO(b"d"), f"{i}.txt") for i in range(3)}
    response = client.post("/avatar", data={**fields, **files})
    assert response.status_code == 413
    assert b"MAX_FORM_PARTS=5" in response.data
    # request.max_content_length set in the view.
    response = client.post("/small", data={"a": "x" * 900, "b": "y" * 200})
    assert response.status_code == 413
    assert b"max_body_size=1000" in response.data
    response = client.post("/small", data={"a": "ok"})
    assert response.get_json() == {"fields": {"a": "ok"}, "files": []}


def test_max_content_length_is_checked_before_reading(app: Flask) -> None:
    read = []

    class Input(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            read.append(size)
            return super().read(size)

    app.config["MAX_CONTENT_LENGTH"] = 1000
    body = b"--b\r\n" + b"x" * 5000
    with app.test_request_context(
        "/small",
        method="POST",
        input_stream=Input(body),
        content_type="multipart/form-data; boundary=b",
        content_length=len(body),
    ):
        response = app.full_dispatch_request()
    assert response.status_code == 413
    assert read == []


def test_upload_errors_are_their_status(client: FlaskClient) -> None:
    response = client.post(
        "/small", data=b"--b\r\nbroken", content_type="multipart/form-data; boundary=b"
    )
    assert response.status_code == 400
    assert b"Bad Request" in response.data
    response = client.post("/small", data=b"a=1", content_type="application/json")
    assert response.get_json() == {"fields": {}, "files": []}  # not a form: Werkzeug's way


def test_a_body_read_from_the_stream_is_a_clear_error(client: FlaskClient) -> None:
    with pytest.raises(RuntimeError, match=r"already read from request\.stream"):
        client.post("/stream-first", data={"doc": (io.BytesIO(b"x" * 100), "a.txt")})
    # get_data() keeps the body in memory: the form is parsed from it.
    response = client.post("/data-first", data={"a": "1"})
    assert response.get_json() == {"length": 3, "fields": {"a": "1"}}


def test_extension_keeps_a_custom_request_class() -> None:
    from flask import Request

    class MyRequest(Request):
        custom = True

    app = Flask(__name__)
    app.request_class = MyRequest
    Spoolup(app)
    assert issubclass(app.request_class, MyRequest)
    Spoolup(app)  # twice: still one layer
    assert app.request_class.__mro__.count(MyRequest) == 1
    assert issubclass(SpoolupFileStorage, FileStorage)


@pytest.mark.slow
def test_backup_over_gunicorn_is_kept_with_its_sha256(server: Server) -> None:
    check_backup(server)


def test_image_over_gunicorn_is_never_written_and_413_above(server: Server) -> None:
    check_image_in_memory(server, IMAGE)
    # MAX_CONTENT_LENGTH (128 MiB) from the app's config, refused from the header.
    assert declare_only(server, "/small", 200 * 1024 * 1024).startswith(b"HTTP/1.1 413")
    assert server.temp_files() == []


def test_client_leaving_mid_upload_leaves_nothing(server: Server) -> None:
    check_client_leaving(server)
    assert list(server.storage.iterdir()) == []
