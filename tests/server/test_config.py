from __future__ import annotations

from pathlib import Path

import pytest

from spoolup.limits import Limits
from spoolup.server.config import ConfigError, ServerConfig, is_loopback, load_config, parse_size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (123, 123),
        ("123", 123),
        ("2 MiB", 2 * 1024 * 1024),
        ("2MB", 2_000_000),
        ("10gib", 10 * 1024**3),
        (" 5 k ", 5000),
        ("1TB", 10**12),
    ],
)
def test_parse_size(value: object, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", [-1, "x", "1.5MB", "2 XB", True, None, 1.0, ""])
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(value, "max_file_size")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.168.1.10", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_defaults() -> None:
    config = load_config()
    assert config == ServerConfig()
    assert config.host == "127.0.0.1"
    assert config.port == 8000
    assert config.storage == "./spoolup-data"
    assert config.token is None
    assert config.limits == Limits()
    assert config.inspect_max_size == 2 * 1024 * 1024


def test_sources_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "spoolup.toml"
    toml.write_text(
        'port = 9000\nstorage = "/srv/files"\ninspect_max_size = "1 MiB"\n'
        'max_files = 3\n[limits]\nmax_file_size = "1 GiB"\nmemory_threshold = 4096\n'
    )
    env = {"SPOOLUP_PORT": "9100", "SPOOLUP_MAX_FILE_SIZE": "2GiB", "SPOOLUP_OTHER": "x"}
    config = load_config(file=toml, environ=env, overrides={"port": 9200, "host": None})
    assert config.port == 9200  # flag over env over file
    assert config.storage == "/srv/files"
    assert config.inspect_max_size == 1024 * 1024
    assert config.limits.max_file_size == 2 * 1024**3  # env over file
    assert config.limits.memory_threshold == 4096
    assert config.limits.max_files == 3
    assert config.host == "127.0.0.1"


def test_config_file_from_environment(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('token = "s3cret"\naccess_log = false\nlog_level = "DEBUG"\n')
    config = load_config(environ={"SPOOLUP_CONFIG": str(toml)})
    assert config.token == "s3cret"
    assert config.access_log is False
    assert config.log_level == "debug"


def test_environment_values() -> None:
    env = {
        "SPOOLUP_TOKEN": "abc",
        "SPOOLUP_INSECURE": "yes",
        "SPOOLUP_HOST": "0.0.0.0",
        "SPOOLUP_GRACEFUL_TIMEOUT": "2.5",
        "SPOOLUP_INSPECT_MAX_PIXELS": "1000",
    }
    config = load_config(environ=env)
    assert (config.token, config.insecure, config.host) == ("abc", True, "0.0.0.0")
    assert config.graceful_timeout == 2.5
    assert config.inspect_max_pixels == 1000


def test_empty_token_means_none() -> None:
    assert load_config(environ={"SPOOLUP_TOKEN": ""}).token is None


def test_refuses_public_host_without_token() -> None:
    with pytest.raises(ConfigError, match="without a token"):
        load_config(overrides={"host": "0.0.0.0"})
    assert load_config(overrides={"host": "0.0.0.0", "token": "t"}).token == "t"
    assert load_config(overrides={"host": "0.0.0.0", "insecure": True}).insecure


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"port": 70000}, "port"),
        ({"port": "eighty"}, "whole number"),
        ({"token": "has space"}, "token"),
        ({"token": 5}, "string"),
        ({"log_level": "loud"}, "log_level"),
        ({"inspect_max_size": 0}, "positive"),
        ({"graceful_timeout": -1}, "negative"),
        ({"graceful_timeout": "soon"}, "number"),
        ({"insecure": "maybe"}, "true or false"),
        ({"storage": ""}, "storage"),
        ({"max_files": "many"}, "whole number"),
        ({"max_file_size": "huge"}, "size"),
        ({"colour": "blue"}, "unknown setting"),
    ],
)
def test_refuses_bad_values(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=overrides)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(file=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(file=bad)
    bad.write_text("limits = 3\n")
    with pytest.raises(ConfigError, match="must be a table"):
        load_config(file=bad)
    bad.write_text("[limits]\nmax_colour = 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting limits\.max_colour"):
        load_config(file=bad)
    bad.write_text("[limits]\nmax_files = -3\n")
    with pytest.raises(ConfigError, match="non-negative"):
        load_config(file=bad)


def test_tus_settings() -> None:
    config = load_config(
        environ={"SPOOLUP_TUS_CHECKPOINT": "8MiB", "SPOOLUP_TUS_MAX_OPEN_UPLOADS": "50"},
        overrides={"tus_checkpoint_seconds": 0.5},
    )
    assert (config.tus_checkpoint, config.tus_checkpoint_seconds) == (8 * 1024 * 1024, 0.5)
    assert config.tus_max_open_uploads == 50
    for bad in ({"tus_checkpoint": 0}, {"tus_checkpoint_seconds": 0}, {"tus_max_open_uploads": 0}):
        with pytest.raises(ConfigError, match="tus_"):
            load_config(overrides=bad)


def test_lock_and_lease() -> None:
    config = load_config(overrides={"lock": "redis://127.0.0.1:6379/0", "lease": "2.5"})
    assert (config.lock, config.lease) == ("redis://127.0.0.1:6379/0", 2.5)
    assert load_config().lease == 3.0
    with pytest.raises(ConfigError, match="lock must be a redis://"):
        load_config(overrides={"lock": "http://127.0.0.1:6379"})
    with pytest.raises(ConfigError, match="lease must be between"):
        load_config(environ={"SPOOLUP_LEASE": "0"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("15m", 900.0),
        ("12h", 43200.0),
        ("7d", 604800.0),
        ("1.5h", 5400.0),
    ],
)
def test_parse_duration(value: object, expected: float) -> None:
    from spoolup.server.config import parse_duration

    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["soon", "-1", "3w", True, -5, None])
def test_parse_duration_refuses(value: object) -> None:
    from spoolup.server.config import parse_duration

    with pytest.raises(ConfigError, match="duration"):
        parse_duration(value)


def test_link_settings() -> None:
    config = load_config(environ={"SPOOLUP_SHARE_TTL": "1h", "SPOOLUP_SHARE_SECRET": "s" * 16})
    assert config.share_ttl == 3600
    assert config.share_secret == "s" * 16
    assert load_config(environ={"SPOOLUP_SHARE_SECRET": ""}).share_secret is None
    with pytest.raises(ConfigError, match="share_secret must be at least 16"):
        load_config(overrides={"share_secret": "short"})
    with pytest.raises(ConfigError, match="share_ttl must be"):
        load_config(overrides={"share_ttl": "400d"})


def test_operator_settings_from_the_environment() -> None:
    config = load_config(
        environ={
            "SPOOLUP_HOOK_URL": "http://127.0.0.1:9/hooks",
            "SPOOLUP_HOOK_SECRET": "s",
            "SPOOLUP_HOOK_TIMEOUT": "2.5",
            "SPOOLUP_HOOK_RETRIES": "0",
            "SPOOLUP_HOOK_PROGRESS_INTERVAL": "0.2",
            "SPOOLUP_METRICS_PORT": "9100",
            "SPOOLUP_LOG_FORMAT": "JSON",
        }
    )
    assert config.hook_url == "http://127.0.0.1:9/hooks"
    assert (config.hook_secret, config.hook_timeout, config.hook_retries) == ("s", 2.5, 0)
    assert config.hook_progress_interval == 0.2
    assert (config.metrics, config.metrics_port, config.log_format) == (True, 9100, "json")
    assert load_config(environ={"SPOOLUP_METRICS": "off"}).metrics is False
    assert load_config(environ={"SPOOLUP_HOOK_URL": ""}).hook_url is None
    assert load_config(environ={"SPOOLUP_PART_BUDGET": "32MiB"}).part_budget == 32 * 1024**2


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"hook_url": "ftp://example/"}, "hook_url"),
        ({"hook_url": "/relative"}, "hook_url"),
        ({"hook_timeout": 0}, "hook_timeout"),
        ({"hook_timeout": 1000}, "hook_timeout"),
        ({"hook_retries": 11}, "hook_retries"),
        ({"hook_progress_interval": -1}, "hook_progress_interval"),
        ({"metrics_port": 70000}, "metrics_port"),
        ({"log_format": "xml"}, "log_format"),
        ({"part_budget": -1}, "part_budget"),
        ({"part_budget": "lots"}, "part_budget"),
    ],
)
def test_refuses_bad_operator_settings(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=overrides)
