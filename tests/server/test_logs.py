from __future__ import annotations

import json
import logging
import logging.config
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spoolup.server.logs import (
    ACCESS_LOGGER,
    RequestIdFilter,
    configure_logging,
    uvicorn_log_config,
)
from tests.server.conftest import RunningServer


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("spoolup")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    access = logging.getLogger(ACCESS_LOGGER).disabled
    yield
    logger.handlers[:], logger.level, logger.propagate = saved
    logging.getLogger(ACCESS_LOGGER).disabled = access


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging() -> None:
    configure_logging("warning", access_log=False)
    logger = logging.getLogger("spoolup")
    assert logger.level == logging.WARNING
    assert len(logger.handlers) == 1
    assert logger.propagate is False
    assert logging.getLogger(ACCESS_LOGGER).disabled
    configure_logging("debug")
    assert not logging.getLogger(ACCESS_LOGGER).disabled
    assert len(logger.handlers) == 1  # replaced, not added


def test_uvicorn_log_config_is_valid() -> None:
    config = uvicorn_log_config("error")
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ["uvicorn", "uvicorn.error", "uvicorn.access"]
        if (lg := logging.getLogger(name))
    }
    try:
        logging.config.dictConfig(config)
        assert logging.getLogger("uvicorn").level == logging.ERROR
        assert logging.getLogger("uvicorn.access").handlers == []
    finally:
        for name, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


@pytest.mark.usefixtures("restore_logging")
def test_json_logs_carry_the_request_id(
    make_server: Callable[..., RunningServer], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    server = make_server(hook_url=f"http://127.0.0.1:{closed}/hooks")
    configure_logging("info", log_format="json")
    with server.client() as client:
        given = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
        made = client.get("/api/files")
        refused = client.put("/api/files/a.txt", content=b"abc", headers={"X-Request-ID": "h-1"})
    assert given.headers["x-request-id"] == "trace-42"
    made_id = made.headers["x-request-id"]
    assert len(made_id) == 16
    assert refused.status_code == 502
    lines = _json_lines(capsys.readouterr().err)
    access = {line["request_id"]: line for line in lines if line["logger"] == ACCESS_LOGGER}
    assert access["trace-42"]["path"] == "/healthz"
    assert access["trace-42"]["status"] == 200
    assert access["trace-42"]["method"] == "GET"
    assert access[made_id]["path"] == "/api/files"
    assert access["h-1"]["status"] == 502
    assert access["h-1"]["bytes_in"] == 3
    assert access["h-1"]["duration_ms"] >= 0
    assert {"timestamp", "level", "message"} <= set(access["h-1"])
    # A line that is not an access line, written while the request ran, has its id too.
    hook_lines = [line for line in lines if line["logger"] == "spoolup.hooks"]
    assert hook_lines
    assert hook_lines[0]["request_id"] == "h-1"
    assert hook_lines[0]["level"] == "WARNING"
    assert "pre-create hook could not be reached" in hook_lines[0]["message"]


@pytest.mark.usefixtures("restore_logging")
def test_plain_logs_stay_plain(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    logging.getLogger("spoolup.test").info("hello %s", "there", extra={"request_id": "r"})
    err = capsys.readouterr().err
    assert err.rstrip().endswith("INFO    spoolup.test: hello there")


def test_uvicorn_json_log_config_is_valid() -> None:
    config = uvicorn_log_config("info", "json")
    logger = logging.getLogger("uvicorn")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        logging.config.dictConfig(config)
        formatter = logger.handlers[0].formatter
        record = logging.LogRecord("uvicorn", logging.INFO, __file__, 1, "started", None, None)
        RequestIdFilter().filter(record)
        assert formatter is not None
        assert json.loads(formatter.format(record))["message"] == "started"
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
