"""Starting ``spoolup serve``: the storage checked before listening, a banner once ready."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import sys
from collections.abc import Mapping

import uvicorn

from spoolup.server.about import banner
from spoolup.server.config import ConfigError, ServerConfig
from spoolup.server.metrics import Metrics
from spoolup.server.store import RecordStore, open_store

__all__ = [
    "BannerServer",
    "StorageUnusable",
    "check_ports",
    "limit_malloc_arenas",
    "open_checked_store",
]

_PROBE = "probe/"
# glibc's mallopt parameter for the number of malloc arenas (M_ARENA_MAX in malloc.h).
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2
"""Malloc arenas of a ``spoolup serve`` process on glibc (see :func:`limit_malloc_arenas`)."""
_FOLDER_HINT = "check that the folder can be created and written by this user"


class StorageUnusable(Exception):
    """The storage cannot be reached, read or written; the message says what to check."""


def check_ports(config: ServerConfig) -> None:
    """Raise :class:`~spoolup.server.config.ConfigError` if a port to listen on is taken.

    Before anything starts, so that a port in use is one line naming its flag, not
    uvicorn's log and exit status (or, for ``--metrics-port``, a traceback at start-up).
    Port 0 picks a free port: nothing to check.
    """
    ports = [("--port", config.port)]
    if config.metrics and config.metrics_port is not None:
        ports.append(("--metrics-port", config.metrics_port))
    for flag, port in ports:
        if port == 0:
            continue
        try:
            found = socket.getaddrinfo(config.host, port, type=socket.SOCK_STREAM)
        except OSError:
            continue  # a host that does not resolve: uvicorn says so
        for family, kind, proto, _, address in found:
            # As uvicorn and the metrics server bind: SO_REUSEADDR, so a port that only
            # has connections closing (TIME_WAIT) is free, and one being listened on is
            # not. Like asyncio's server, skip an address family the machine lacks.
            try:
                probe = socket.socket(family, kind, proto)
            except OSError:
                continue
            with probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    if exc.errno == errno.EADDRNOTAVAIL:
                        continue  # not an address of this machine: uvicorn says so
                    shown = f"[{config.host}]" if ":" in config.host else config.host
                    reason = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                    msg = f"cannot listen on {shown}:{port} ({flag}): {reason}"
                    raise ConfigError(msg) from None


def open_checked_store(spec: str) -> RecordStore:
    """Open the storage ``spec`` names; write, read back and delete one small object.

    Raises :class:`StorageUnusable` if any of it fails (and
    :class:`~spoolup.server.config.ConfigError` for a spec that names no backend). Run
    before listening, so that a server with no way to store files says so at once
    instead of answering 500 to every upload.
    """
    key = f"{_PROBE}{socket.gethostname()[:60]}-{os.getpid()}"
    try:
        store = open_store(spec)
    except OSError as exc:
        msg = f"cannot use the storage {spec}: {exc.strerror}\n  {_FOLDER_HINT}"
        raise StorageUnusable(msg) from exc
    try:
        store.storage.write(key, b"spoolup start-up check")
        store.storage.read_bytes(key)
        store.storage.delete(key)
    except Exception as exc:
        reason = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
        if spec.startswith("s3://"):
            hint = (
                "check that the bucket exists and that AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and AWS_REGION let this server write to it"
            )
        else:
            hint = _FOLDER_HINT
        msg = f"cannot use the storage {spec}: {reason}\n  {hint}"
        raise StorageUnusable(msg) from exc
    return store


class BannerServer(uvicorn.Server):
    """uvicorn's server, printing :func:`~spoolup.server.about.banner` once it listens."""

    def __init__(
        self, config: uvicorn.Config, settings: ServerConfig, *, metrics: Metrics | None = None
    ) -> None:
        super().__init__(config)
        self.settings = settings
        self.metrics = metrics

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does; then say where to go (with the port really bound)."""
        await super().startup(sockets)
        if not self.started:
            return
        port = self.settings.port
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                port = sock.getsockname()[1]
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        served = self.metrics.served_port if self.metrics is not None else None
        metrics_url = None if served is None else f"http://{shown}:{served}/metrics"
        sys.stderr.write(banner(self.settings, f"http://{shown}:{port}/", metrics_url=metrics_url))
        sys.stderr.flush()


def limit_malloc_arenas(environ: Mapping[str, str]) -> bool:
    """Hold glibc's malloc to :data:`MALLOC_ARENAS` arenas; False where not done.

    glibc gives threads that allocate at once arenas of their own, up to 8 per core,
    and memory freed in one arena serves only that arena's threads: the part buffers
    and request bodies handled by many worker threads left the server's memory far
    above what it held (8 tus uploads at once on S3 grew it by 94 to 133 MiB from run
    to run, 90 to 97 MiB with 2 arenas, at the same speed: ``benchmarks/results/tus.md``).
    Called before any thread starts; an operator's own ``MALLOC_ARENA_MAX`` is kept.
    """
    if "MALLOC_ARENA_MAX" in environ or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
