"""What a server tells its users about itself: ``GET /api/limits`` and the start-up banner."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from spoolup._units import format_duration, format_size
from spoolup.server.config import ServerConfig

__all__ = ["banner", "limits_json", "spoolup_version"]


def spoolup_version() -> str:
    """The installed spoolup's version (``0+unknown`` when run from a bare source tree)."""
    try:
        return version("spoolup")
    except PackageNotFoundError:  # pragma: no cover
        return "0+unknown"


def limits_json(config: ServerConfig, *, links: object = None) -> dict[str, Any]:
    """The limits a client checks before sending anything (``GET /api/limits``).

    ``max_file_size`` holds for every way of sending (a multipart form, ``PUT``, tus);
    a form or a ``PUT`` body is also held to ``max_body_size``. ``links`` says whether
    this server makes share and upload links (it does when it has a token).
    """
    limits = config.limits
    return {
        "max_file_size": limits.max_file_size,
        "max_body_size": limits.max_body_size,
        "max_files": limits.max_files,
        "inspect_max_size": config.inspect_max_size,
        "links": links is not None,
        "share_ttl": config.share_ttl,
    }


def _storage_words(spec: str) -> str:
    if spec.startswith("s3://"):
        return spec
    return str(Path(spec).resolve())


def banner(config: ServerConfig, url: str, *, metrics_url: str | None = None) -> str:
    """The lines ``spoolup serve`` prints when it is ready: where to go, what it does.

    ``metrics_url`` is where ``/metrics`` is served when it has a port of its own.
    """
    limits = config.limits
    if config.token:
        auth = "on: /api and /tus need 'Authorization: Bearer <token>'"
        links = (
            f"share and upload links last up to {format_duration(config.share_ttl)} "
            f"(--share-ttl); change share_secret to revoke them all"
        )
    else:
        auth = "off: anyone who can reach this address can upload, download and delete"
        links = "off (they need a token)"
    lines = [
        f"spoolup {spoolup_version()} is ready: open {url}",
        f"  storage  {_storage_words(config.storage)}",
        f"  token    {auth}",
        f"  limits   files up to {format_size(limits.max_file_size)}, "
        f"requests up to {format_size(limits.max_body_size)}, "
        f"{limits.max_files} files a request, "
        f"images to check up to {format_size(config.inspect_max_size)}",
        f"  links    {links}",
    ]
    if metrics_url is not None:
        lines.append(f"  metrics  {metrics_url} (no token)")
    lines.append("  stop     Ctrl-C")
    return "\n".join(lines) + "\n"
