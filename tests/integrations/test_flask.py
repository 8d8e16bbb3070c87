import os
import tempfile
from pathlib import Path

import pytest
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from spoolup import Limits, UploadError
from spoolup.integrations.flask import parse_form, receive_file
from tests.integrations.helpers import CONTENT_TYPE, EXPECTED, body, summary

app = Flask(__name__)


@app.post("/form")
def form_view() -> ResponseReturnValue:
    try:
        with parse_form(request, limits=Limits(max_file_size=4 << 20)) as form:
            return jsonify(summary(form))
    except UploadError as exc:
        return jsonify({"error": exc.message}), exc.status


@app.put("/raw/<name>")
def raw_view(name: str) -> ResponseReturnValue:
    file = receive_file(request, filename=name)
    assert file is not None
    with file:
        return jsonify([file.filename, file.size, file.content_type])


@app.post("/tiny")
def tiny() -> ResponseReturnValue:
    try:
        with parse_form(request, limits=Limits(max_file_size=1000)):
            return "accepted"
    except UploadError as exc:
        return jsonify({"error": exc.message}), exc.status


@pytest.fixture
def tmpdir_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_form_through_flask(tmpdir_empty: Path) -> None:
    response = app.test_client().post("/form", data=body(), headers={"content-type": CONTENT_TYPE})
    assert response.status_code == 200
    assert response.get_json() == EXPECTED
    assert os.listdir(tmpdir_empty) == []


def test_oversized_file_is_413(tmpdir_empty: Path) -> None:
    response = app.test_client().post("/tiny", data=body(), headers={"content-type": CONTENT_TYPE})
    assert response.status_code == 413
    assert "max_file_size=1000" in response.get_json()["error"]
    assert os.listdir(tmpdir_empty) == []


def test_raw_body(tmpdir_empty: Path) -> None:
    response = app.test_client().put(
        "/raw/report.pdf", data=b"%PDF-1.7", headers={"content-type": "application/pdf"}
    )
    assert response.get_json() == ["report.pdf", 8, "application/pdf"]
