from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator

import pytest

from spoolup.server.logs import ACCESS_LOGGER, configure_logging, uvicorn_log_config


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
