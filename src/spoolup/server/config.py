"""The upload server's settings: defaults, a TOML file, ``SPOOLUP_*`` variables, flags.

Later sources win: defaults < TOML file < environment < command-line flags. Every
``Limits`` field is settable in each of them, and sizes are given in bytes or with a
unit (``"2 MiB"``, ``"10GB"``). Performs no I/O but reading the TOML file it is given.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spoolup._io import PART_BUDGET
from spoolup.limits import Limits

__all__ = [
    "DEFAULT_INSPECT_MAX_PIXELS",
    "DEFAULT_INSPECT_MAX_SIZE",
    "DEFAULT_SHARE_TTL",
    "MAX_SHARE_TTL",
    "ConfigError",
    "ServerConfig",
    "is_loopback",
    "load_config",
    "parse_duration",
    "parse_size",
]

DEFAULT_INSPECT_MAX_SIZE = 2 * 1024 * 1024
"""Bytes of one image ``POST /api/inspect/image`` accepts (2 MiB)."""

DEFAULT_INSPECT_MAX_PIXELS = 40_000_000
"""Pixels of one image the inspector decodes (a small PNG can claim a huge canvas)."""

DEFAULT_SHARE_TTL = 7 * 24 * 3600.0
"""Seconds a share or upload link lasts by default (7 days)."""

MAX_SHARE_TTL = 366 * 24 * 3600.0
"""The longest a link may last (a year and a day)."""

_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_ORIGIN = re.compile(r"https?://[^/\s]+")
_SIZE = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")
_LIMIT_NAMES = tuple(f.name for f in dataclasses.fields(Limits))
_SIZE_LIMITS = frozenset(
    {
        "max_body_size",
        "max_file_size",
        "max_field_size",
        "max_header_size",
        "memory_threshold",
    }
)


class ConfigError(ValueError):
    """A setting is missing, malformed, or unsafe (the message says which and why)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Everything ``spoolup serve`` needs; frozen, derive variants with ``dataclasses.replace``.

    Attributes:
        host: address to listen on (127.0.0.1).
        port: TCP port (8000; 0 picks a free one).
        storage: a local folder, or ``s3://bucket/prefix`` (``./spoolup-data``).
        token: the bearer token every ``/api`` and ``/tus`` request must carry, or ``None``.
        insecure: allow listening beyond loopback without a token.
        limits: bounds on ``POST /api/files`` and ``PUT /api/files/{name}`` bodies.
        inspect_max_size: bytes of one image for ``POST /api/inspect/image`` (2 MiB).
        inspect_max_pixels: pixels of one image the inspector decodes (40 million).
        graceful_timeout: seconds running requests get to finish on shutdown (30).
        log_level: ``debug``, ``info``, ``warning`` or ``error`` (``info``).
        access_log: write one access-log line per request (on).
        lock: where tus write leases are kept: ``None`` for the storage itself (files,
            or S3 conditional writes), or a Redis/Valkey URL (``redis://host:6379/0``).
        lease: seconds a tus write lease lasts unless renewed (3): how long a killed
            server keeps its uploads from the others.
        share_secret: the key that signs share and upload links (derived from ``token``
            when unset; give several servers the same one; change it to revoke every link).
        share_ttl: seconds a share or upload link lasts unless it asks for less (7 days).
        header_limit: bytes of one request line and its headers together (64 KiB; 431).
        header_timeout: seconds a request's line and headers may take (30; 408).
        body_timeout: seconds a request body may stay silent while it is read (60).
        min_body_rate: bytes a second a request body must average over each
            ``body_timeout`` window while the server waits for it (1 KiB; 0: no minimum;
            408 below).
        max_connections: open connections at most (4096, and below the open-file
            limit); the ones beyond are answered 503.
        allowed_hosts: the names a request's ``Host`` may carry (``*`` any, ``*.example.org``
            a domain and its subdomains); empty: the names ``host`` listens on.
        cors_origins: origins (``https://app.example.org``) whose pages may use the API;
            empty: none but the server's own.
        sweep_interval: seconds between sweeps of what crashes and outages left in
            storage (300; one runs at start).
        min_free_space: bytes the storage folder and the temp folder must have free for
            ``/healthz`` to answer 200 (64 MiB).
        part_budget: bytes of S3 part buffers (8 MiB each) the process holds past which
            an upload sends its parts one at a time, in its own part (64 MiB; 0: always);
            memory stays under this plus one part per upload in flight.
        log_format: ``plain`` or ``json`` (one JSON object per line).
        metrics: collect Prometheus metrics, served at ``/metrics`` (on).
        metrics_port: serve ``/metrics`` on this port instead (same host, no token; 0
            picks a free one, named in the start-up banner).
        hook_url: where tusd-style hook requests are POSTed, or ``None``.
        hook_secret: signs each hook request body (HMAC-SHA256), or ``None``.
        hook_timeout: seconds one hook delivery may take (5).
        hook_retries: retries of a non-blocking hook after a failure (3).
        hook_progress_interval: seconds between post-receive hooks of one file (1).
        tus_checkpoint: bytes of a tus request between two checkpoints, where its bytes
            and offset are made durable (64 MiB; see docs/deploy.md for what a crash loses).
        tus_checkpoint_seconds: seconds between two checkpoints, whichever comes first (2).
        tus_max_open_uploads: unfinished tus uploads at most; creations beyond are
            answered 429 (10,000).
        tus_max_open_per_client: unfinished tus uploads of one client at most (per
            address, IPv6 per /64; 1,000; 0: no per-client cap); 429 beyond.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    storage: str = "./spoolup-data"
    token: str | None = None
    insecure: bool = False
    limits: Limits = field(default_factory=Limits)
    inspect_max_size: int = DEFAULT_INSPECT_MAX_SIZE
    inspect_max_pixels: int = DEFAULT_INSPECT_MAX_PIXELS
    graceful_timeout: float = 30.0
    log_level: str = "info"
    access_log: bool = True
    lock: str | None = None
    lease: float = 3.0
    share_secret: str | None = None
    share_ttl: float = DEFAULT_SHARE_TTL
    header_limit: int = 64 * 1024
    header_timeout: float = 30.0
    body_timeout: float = 60.0
    min_body_rate: int = 1024
    max_connections: int = 4096
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    sweep_interval: float = 300.0
    min_free_space: int = 64 * 1024 * 1024
    part_budget: int = PART_BUDGET
    log_format: str = "plain"
    metrics: bool = True
    metrics_port: int | None = None
    hook_url: str | None = None
    hook_secret: str | None = None
    hook_timeout: float = 5.0
    hook_retries: int = 3
    hook_progress_interval: float = 1.0
    tus_checkpoint: int = 64 * 1024 * 1024
    tus_checkpoint_seconds: float = 2.0
    tus_max_open_uploads: int = 10_000
    tus_max_open_per_client: int = 1_000

    def check(self) -> None:
        """Raise :class:`ConfigError` if the settings are inconsistent or unsafe.

        Listening beyond loopback without a token is refused unless ``insecure``.
        """
        if not 0 <= self.port <= 65535:
            msg = f"port must be between 0 and 65535, not {self.port}"
            raise ConfigError(msg)
        if self.token is not None and not _token_ok(self.token):
            msg = "token must be 1 to 1024 visible ASCII characters with no spaces"
            raise ConfigError(msg)
        if self.log_level not in {"debug", "info", "warning", "error"}:
            msg = f"log_level must be debug, info, warning or error, not {self.log_level!r}"
            raise ConfigError(msg)
        if self.inspect_max_size <= 0 or self.inspect_max_pixels <= 0:
            msg = "inspect_max_size and inspect_max_pixels must be positive"
            raise ConfigError(msg)
        if self.graceful_timeout < 0:
            msg = "graceful_timeout must not be negative"
            raise ConfigError(msg)
        if not 0 < self.lease <= 3600:
            msg = f"lease must be between 0 and 3600 seconds, not {self.lease}"
            raise ConfigError(msg)
        if self.lock is not None and not self.lock.lower().startswith(_LOCK_SCHEMES):
            msg = f"lock must be a redis://, rediss:// or valkey:// URL, not {self.lock!r}"
            raise ConfigError(msg)
        if not 0 < self.share_ttl <= MAX_SHARE_TTL:
            msg = f"share_ttl must be more than 0 and at most {MAX_SHARE_TTL:.0f} seconds"
            raise ConfigError(msg)
        if self.share_secret is not None and len(self.share_secret) < 16:
            msg = "share_secret must be at least 16 characters"
            raise ConfigError(msg)
        if not self.storage:
            msg = "storage must not be empty"
            raise ConfigError(msg)
        if self.header_limit < 1024 or self.max_connections < 1:
            msg = "header_limit must be at least 1024 bytes and max_connections at least 1"
            raise ConfigError(msg)
        if self.min_body_rate < 0 or self.part_budget < 0:
            msg = "min_body_rate and part_budget must not be negative"
            raise ConfigError(msg)
        if self.header_timeout <= 0 or self.body_timeout <= 0 or self.sweep_interval <= 0:
            msg = "header_timeout, body_timeout and sweep_interval must be positive"
            raise ConfigError(msg)
        for origin in self.cors_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                msg = f"cors_origins: {origin!r} is not an origin such as https://example.org"
                raise ConfigError(msg)
        _check_operations(self)
        if self.tus_checkpoint < 1 or self.tus_checkpoint_seconds <= 0:
            msg = "tus_checkpoint and tus_checkpoint_seconds must be positive"
            raise ConfigError(msg)
        if self.tus_max_open_uploads < 1 or self.tus_max_open_per_client < 0:
            msg = "tus_max_open_uploads must be at least 1, tus_max_open_per_client at least 0"
            raise ConfigError(msg)
        if not self.token and not self.insecure and not is_loopback(self.host):
            msg = (
                f"refusing to listen on {self.host} without a token: pass --token "
                "(or set SPOOLUP_TOKEN), or --insecure if you really mean it"
            )
            raise ConfigError(msg)


_LOCK_SCHEMES = ("redis://", "rediss://", "valkey://", "valkeys://", "unix://")


def _check_operations(config: ServerConfig) -> None:
    """The logging, metrics and hook settings."""
    if config.log_format not in {"plain", "json"}:
        msg = f"log_format must be plain or json, not {config.log_format!r}"
        raise ConfigError(msg)
    if config.metrics_port is not None and not 0 <= config.metrics_port <= 65535:
        msg = f"metrics_port must be between 0 and 65535, not {config.metrics_port}"
        raise ConfigError(msg)
    if config.metrics_port == config.port != 0:
        msg = (
            f"metrics_port must differ from port ({config.port}): "
            "/metrics is served on the main port without --metrics-port"
        )
        raise ConfigError(msg)
    if config.hook_url is not None and not re.match(r"https?://[^/\s]+", config.hook_url):
        msg = f"hook_url must be an http:// or https:// URL, not {config.hook_url!r}"
        raise ConfigError(msg)
    if not 0 < config.hook_timeout <= 300:
        msg = "hook_timeout must be more than 0 and at most 300 seconds"
        raise ConfigError(msg)
    if not 0 <= config.hook_retries <= 10:
        msg = "hook_retries must be between 0 and 10"
        raise ConfigError(msg)
    if not 0 <= config.hook_progress_interval <= 3600:
        msg = "hook_progress_interval must be between 0 and 3600 seconds"
        raise ConfigError(msg)


def _token_ok(token: str) -> bool:
    return 0 < len(token) <= 1024 and all(0x21 <= ord(c) <= 0x7E for c in token)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_size(value: object, name: str = "size") -> int:
    """A byte count from an int or a string with an optional unit (``"2 MiB"``, ``"10GB"``).

    Decimal units (kB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB)
    powers of 1024. Raises :class:`ConfigError` for anything else or a negative number.
    """
    if isinstance(value, bool):
        msg = f"{name} must be a size, not {value!r}"
        raise ConfigError(msg)
    if isinstance(value, int):
        if value < 0:
            msg = f"{name} must not be negative"
            raise ConfigError(msg)
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match and match.group(2).lower() in _UNITS:
            return int(match.group(1)) * _UNITS[match.group(2).lower()]
    msg = f"{name} must be a size such as 1048576, '512 KiB' or '2 MB', not {value!r}"
    raise ConfigError(msg)


def parse_duration(value: object, name: str = "duration") -> float:
    """Seconds from a number or a string with a unit: ``"90"``, ``"15m"``, ``"12h"``, ``"7d"``.

    Raises :class:`ConfigError` for anything else or a negative number.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.lower())
        if match and match.group(2) in _DURATION_UNITS:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    msg = f"{name} must be a duration such as 3600, '15m', '12h' or '7d', not {value!r}"
    raise ConfigError(msg)


def _parse_int(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    msg = f"{name} must be a whole number, not {value!r}"
    raise ConfigError(msg)


def _parse_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    msg = f"{name} must be true or false, not {value!r}"
    raise ConfigError(msg)


def _parse_float(value: object, name: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    msg = f"{name} must be a number, not {value!r}"
    raise ConfigError(msg)


def _parse_names(value: object, name: str) -> tuple[str, ...]:
    """A list of names: a TOML array, a flag given several times, or ``"a, b"``."""
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, list | tuple) and all(isinstance(i, str) for i in items):
        return tuple(i.strip() for i in items if i.strip())
    msg = f"{name} must be a list of names, not {value!r}"
    raise ConfigError(msg)


def _parse_str(value: object, name: str) -> str:
    if isinstance(value, str):
        return value
    msg = f"{name} must be a string, not {value!r}"
    raise ConfigError(msg)


_SETTINGS: dict[str, Any] = {
    "host": _parse_str,
    "port": _parse_int,
    "storage": _parse_str,
    "token": _parse_str,
    "insecure": _parse_bool,
    "inspect_max_size": parse_size,
    "inspect_max_pixels": _parse_int,
    "graceful_timeout": _parse_float,
    "log_level": lambda v, n: _parse_str(v, n).lower(),
    "access_log": _parse_bool,
    "lock": _parse_str,
    "lease": _parse_float,
    "share_secret": _parse_str,
    "share_ttl": parse_duration,
    "header_limit": parse_size,
    "header_timeout": _parse_float,
    "body_timeout": _parse_float,
    "min_body_rate": parse_size,
    "max_connections": _parse_int,
    "allowed_hosts": _parse_names,
    "cors_origins": _parse_names,
    "sweep_interval": _parse_float,
    "min_free_space": parse_size,
    "part_budget": parse_size,
    "log_format": lambda v, n: _parse_str(v, n).lower(),
    "metrics": _parse_bool,
    "metrics_port": _parse_int,
    "hook_url": _parse_str,
    "hook_secret": _parse_str,
    "hook_timeout": _parse_float,
    "hook_retries": _parse_int,
    "hook_progress_interval": _parse_float,
    "tus_checkpoint": parse_size,
    "tus_checkpoint_seconds": _parse_float,
    "tus_max_open_uploads": _parse_int,
    "tus_max_open_per_client": _parse_int,
}


def _apply(
    settings: dict[str, Any], limits: dict[str, int], source: Mapping[str, object], where: str
) -> None:
    """Check and copy the known keys of ``source`` into ``settings`` and ``limits``."""
    for key, value in source.items():
        if value is None:
            continue
        if key in _SETTINGS:
            settings[key] = _SETTINGS[key](value, f"{where}{key}")
        elif key in _LIMIT_NAMES:
            parse = parse_size if key in _SIZE_LIMITS else _parse_int
            limits[key] = parse(value, f"{where}{key}")
        else:
            msg = f"unknown setting {where}{key}"
            raise ConfigError(msg)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        msg = f"cannot read the config file {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"the config file {path} is not valid TOML: {exc}"
        raise ConfigError(msg) from exc
    flat: dict[str, object] = {k: v for k, v in data.items() if k != "limits"}
    table = data.get("limits", {})
    if not isinstance(table, dict):
        msg = f"[limits] in {path} must be a table"
        raise ConfigError(msg)
    for key, value in table.items():
        if key not in _LIMIT_NAMES:
            msg = f"unknown setting limits.{key} in {path}"
            raise ConfigError(msg)
        flat[key] = value
    return flat


def load_config(
    *,
    file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> ServerConfig:
    """Build and check a :class:`ServerConfig` from a TOML file, the environment and flags.

    ``file`` (or ``SPOOLUP_CONFIG``) names a TOML file whose top-level keys are the
    :class:`ServerConfig` attributes and whose ``[limits]`` table holds ``Limits`` fields
    (these may also sit at the top level). ``environ`` maps ``SPOOLUP_<NAME>`` to values
    (``SPOOLUP_MAX_FILE_SIZE=2GiB``; unknown names are ignored). ``overrides`` holds the
    flags given, ``None`` for those not given. Raises :class:`ConfigError` for anything
    unknown, malformed or unsafe.
    """
    environ = {} if environ is None else environ
    settings: dict[str, Any] = {}
    limits: dict[str, int] = {}
    if file is None and environ.get("SPOOLUP_CONFIG"):
        file = environ["SPOOLUP_CONFIG"]
    if file is not None:
        _apply(settings, limits, _read_toml(Path(file)), "")
    # Unknown SPOOLUP_* variables are left alone: other tools may share the prefix.
    known = {*_SETTINGS, *_LIMIT_NAMES}
    from_env = {
        name: value
        for key, value in environ.items()
        if key.startswith("SPOOLUP_") and (name := key.removeprefix("SPOOLUP_").lower()) in known
    }
    _apply(settings, limits, from_env, "SPOOLUP_")
    _apply(settings, limits, overrides or {}, "")
    for optional in ("token", "hook_url", "hook_secret", "share_secret"):
        if settings.get(optional) == "":
            settings[optional] = None
    try:
        settings["limits"] = Limits(**limits)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    config = ServerConfig(**settings)
    config.check()
    return config
