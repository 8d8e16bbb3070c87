"""Starting ``spoolup serve``: the storage checked before listening, a banner once ready."""

from __future__ import annotations

import os
import socket
import sys

import uvicorn

from spoolup.server.about import banner
from spoolup.server.config import ServerConfig
from spoolup.server.store import RecordStore

__all__ = ["BannerServer", "StorageUnusable", "check_storage"]

_PROBE = "probe/"


class StorageUnusable(Exception):
    """The storage cannot be reached, read or written; the message says what to check."""


def check_storage(store: RecordStore, spec: str) -> None:
    """Write, read back and delete one small object; raise :class:`StorageUnusable` if not.

    Run before listening, so that a server with no way to store files says so at once
    instead of answering 500 to every upload.
    """
    key = f"{_PROBE}{socket.gethostname()[:60]}-{os.getpid()}"
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
            hint = "check that the folder can be created and written by this user"
        msg = f"cannot use the storage {spec}: {reason}\n  {hint}"
        raise StorageUnusable(msg) from exc


class BannerServer(uvicorn.Server):
    """uvicorn's server, printing :func:`~spoolup.server.about.banner` once it listens."""

    def __init__(self, config: uvicorn.Config, settings: ServerConfig) -> None:
        super().__init__(config)
        self.settings = settings

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
        sys.stderr.write(banner(self.settings, f"http://{shown}:{port}/"))
        sys.stderr.flush()
