"""The ``spoolup`` command: ``serve`` runs the upload server, ``upload`` sends files to one.

``spoolup upload FILE... --url URL [--token T]`` streams each file to
``PUT /api/files/{name}`` (never holding it whole in memory) with a progress bar,
retries on connection errors with a bounded, growing pause, prints the server's
record as one JSON line on standard output, and checks its sha256 against the bytes
sent: a mismatch, a refused file or a missing file makes the exit status non-zero.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["main"]

CHUNK_SIZE = 1024 * 1024
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_LIMIT_FLAGS = (
    ("max_body_size", "bytes in one request body"),
    ("max_file_size", "bytes in one file"),
    ("max_files", "files in one request"),
    ("max_fields", "non-file fields in one request"),
    ("max_field_size", "bytes in one non-file field"),
    ("max_header_size", "bytes in one part's header block"),
    ("max_headers", "header lines in one part"),
    ("memory_threshold", "bytes of a file kept in memory before it spools to disk"),
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spoolup", description="Receive file uploads: a server, and a client for it."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the upload server",
        description="Run the upload server (web page, HTTP API) on uvicorn.",
    )
    serve.add_argument("--host", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (8000)")
    serve.add_argument(
        "--storage", help="a folder, or s3://bucket/prefix (./spoolup-data)", metavar="PATH|URL"
    )
    serve.add_argument("--token", help="bearer token required on /api and /tus (SPOOLUP_TOKEN)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow listening beyond loopback without a token",
    )
    serve.add_argument("--config", metavar="FILE", help="a TOML file of settings")
    for name, what in _LIMIT_FLAGS:
        serve.add_argument(f"--{name.replace('_', '-')}", metavar="SIZE", help=what)
    serve.add_argument(
        "--inspect-max-size", metavar="SIZE", help="bytes of an image to inspect (2 MiB)"
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="(info)")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false", default=None)

    upload = commands.add_parser(
        "upload",
        help="upload files to a spoolup server",
        description="Upload files to a spoolup server and check their sha256.",
    )
    upload.add_argument("files", nargs="+", metavar="FILE", type=Path)
    upload.add_argument(
        "--url",
        default=os.environ.get("SPOOLUP_URL", "http://127.0.0.1:8000"),
        help="the server (SPOOLUP_URL, else http://127.0.0.1:8000)",
    )
    upload.add_argument("--token", help="bearer token (SPOOLUP_TOKEN)")
    upload.add_argument(
        "--retries", type=int, default=5, help="retries per file on connection errors (5)"
    )
    upload.add_argument("--timeout", type=float, default=60.0, help="seconds of silence (60)")
    upload.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``spoolup`` command line; returns the exit status."""
    args = _build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args, os.environ)
    return upload(args, os.environ)


# ---------------------------------------------------------------- serve


def serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``spoolup serve``: check the settings, open the storage and run uvicorn."""
    import uvicorn

    from spoolup.server.app import create_app
    from spoolup.server.config import ConfigError, load_config
    from spoolup.server.logs import configure_logging, uvicorn_log_config

    names = ["host", "port", "storage", "token", "insecure", "log_level", "access_log"]
    names += [name for name, _ in _LIMIT_FLAGS] + ["inspect_max_size"]
    overrides = {name: getattr(args, name) for name in names}
    try:
        config = load_config(file=args.config, environ=environ, overrides=overrides)
        app = create_app(config)
    except ConfigError as exc:
        sys.stderr.write(f"spoolup serve: {exc}\n")
        return EXIT_USAGE
    configure_logging(config.log_level, access_log=config.access_log)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        http="httptools",
        log_config=uvicorn_log_config(config.log_level),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(config.graceful_timeout),
    )
    return EXIT_OK


# ---------------------------------------------------------------- upload


class UploadFailed(Exception):
    """One file could not be uploaded; the message says why, in the server's words."""


def _file_chunks(path: Path, digest: Any, advance: Callable[[int], None]) -> Iterator[bytes]:
    """Read ``path`` a chunk at a time, hashing and reporting each chunk as it is sent."""
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
            advance(len(chunk))
            yield chunk


def _server_error(response: Any) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    text = error if isinstance(error, str) else (response.text[:200] or response.reason_phrase)
    hint = " (pass --token or set SPOOLUP_TOKEN)" if response.status_code == 401 else ""
    return f"{response.status_code}: {text}{hint}"


def upload_one(
    client: Any,
    path: Path,
    *,
    retries: int,
    progress: Callable[[int | None, int], None],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Upload one file and return the server's record, its sha256 checked.

    ``progress(completed, total)`` is called with the bytes sent (``None`` to keep the
    count, with a new total). On a connection error the upload starts again from the
    first byte after a pause of 0.5, 1, 2, ... seconds (at most 10), ``retries`` times.
    Raises :class:`UploadFailed`.
    """
    import httpx

    try:
        size = path.stat().st_size
    except OSError as exc:
        msg = f"cannot read the file: {exc.strerror}"
        raise UploadFailed(msg) from exc
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    url = f"/api/files/{quote(path.name, safe='')}"
    for attempt in range(retries + 1):
        digest = hashlib.sha256()
        sent = 0

        def advance(n: int) -> None:
            nonlocal sent
            sent += n
            progress(sent, size)

        progress(0, size)
        try:
            response = client.put(
                url,
                content=_file_chunks(path, digest, advance),
                headers={"Content-Type": content_type, "Content-Length": str(size)},
            )
        except OSError as exc:
            msg = f"cannot read the file: {exc.strerror}"
            raise UploadFailed(msg) from exc
        except httpx.TransportError as exc:
            if attempt == retries:
                msg = f"{exc.__class__.__name__}: {exc} (gave up after {retries + 1} attempts)"
                raise UploadFailed(msg) from exc
            sleep(min(10.0, 0.5 * 2**attempt))
            continue
        if response.status_code != 201:
            raise UploadFailed(_server_error(response))
        record: dict[str, Any] = response.json()
        if sent != size:
            msg = f"the file changed while it was sent ({size} bytes, then {sent})"
            raise UploadFailed(msg)
        if record.get("sha256") != digest.hexdigest():
            msg = (
                f"sha256 mismatch: the server stored {record.get('sha256')}, "
                f"the file sent has {digest.hexdigest()}"
            )
            raise UploadFailed(msg)
        return record
    raise AssertionError  # pragma: no cover  (the loop returns or raises)


def upload(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``spoolup upload``: send each file, print each record, exit 1 if any failed."""
    import httpx
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    token = args.token or environ.get("SPOOLUP_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    console = Console(stderr=True)
    timeout = httpx.Timeout(args.timeout, connect=min(10.0, args.timeout))
    failures = 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with (
        httpx.Client(base_url=args.url, headers=headers, timeout=timeout) as client,
        Progress(*columns, console=console, disable=args.quiet) as bars,
    ):
        for path in args.files:
            task = bars.add_task(path.name, total=None)

            def progress(completed: int | None, total: int, task: Any = task) -> None:
                bars.update(task, completed=completed, total=total)

            try:
                record = upload_one(client, path, retries=args.retries, progress=progress)
            except UploadFailed as exc:
                failures += 1
                bars.update(task, description=f"[red]{path.name}")
                console.print(
                    f"[red]spoolup upload: {path}: {exc}[/red]", highlight=False, soft_wrap=True
                )
                continue
            bars.update(task, description=f"[green]{path.name}")
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
    return EXIT_FAILED if failures else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
