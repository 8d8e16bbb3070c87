"""The ``spoolup`` command: ``serve`` runs the upload server, ``upload`` sends files to one.

``spoolup upload FILE... --url URL [--token T]`` sends each file with a progress bar,
prints the server's record as one JSON line on standard output, and checks its sha256
against the local file: a mismatch, a refused file or a missing file makes the exit
status non-zero.

Files of ``--tus-threshold`` bytes or more (8 MiB by default; 0 sends every file this
way) go by tus to ``/tus/`` (:mod:`spoolup.tus_client`) in ``--chunk-size`` chunks:
an upload interrupted by a lost connection, a crash or Ctrl-C continues from the
server's offset when the same command is run again (the upload URL is kept in the
user's cache folder until the upload completes). Smaller files are streamed in one
``PUT /api/files/{name}`` (one request, never held whole in memory), started again
from the first byte after a connection error. Both retry with bounded, growing pauses.
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
TUS_THRESHOLD = 8 * 1024 * 1024
"""Files of this many bytes or more are sent by tus (resumable) unless told otherwise."""
TUS_CHUNK_SIZE = 8 * 1024 * 1024
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
    serve.add_argument(
        "--lock", metavar="URL", help="keep tus leases in Redis/Valkey (redis://host:6379/0)"
    )
    serve.add_argument(
        "--lease", type=float, metavar="SECONDS", help="tus write lease, renewed while writing (3)"
    )
    serve.add_argument(
        "--header-limit", metavar="SIZE", help="bytes of a request line and headers (64KiB)"
    )
    serve.add_argument(
        "--header-timeout", type=float, metavar="S", help="seconds to send the headers (30)"
    )
    serve.add_argument(
        "--body-timeout", type=float, metavar="S", help="seconds a body may stay silent (60)"
    )
    serve.add_argument("--max-connections", type=int, help="open connections at most (4096)")
    serve.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        metavar="NAME",
        help="a name clients may reach the server by (repeat; default: the --host names)",
    )
    serve.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        metavar="ORIGIN",
        help="an origin whose pages may upload and read (repeat; default: none)",
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="(info)")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false", default=None)
    _add_operator_flags(serve)

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
    upload.add_argument(
        "--tus-threshold",
        type=_size,
        default=TUS_THRESHOLD,
        metavar="SIZE",
        help="send files of this size or more by tus, resumable (8MiB; 0: every file)",
    )
    upload.add_argument(
        "--chunk-size",
        type=_chunk_size,
        default=TUS_CHUNK_SIZE,
        metavar="SIZE",
        help="bytes per tus request (8MiB)",
    )
    upload.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _add_operator_flags(serve: argparse.ArgumentParser) -> None:
    """Logs, metrics and hooks (see spoolup.server.logs, .metrics and .hooks)."""
    serve.add_argument("--log-format", choices=["plain", "json"], help="(plain)")
    serve.add_argument(
        "--no-metrics", dest="metrics", action="store_false", default=None, help="no /metrics"
    )
    serve.add_argument(
        "--metrics-port", type=int, help="serve /metrics on this port instead (no token)"
    )
    serve.add_argument("--hook-url", help="POST tusd-style hook requests here", metavar="URL")
    serve.add_argument(
        "--hook-secret", help="sign hook requests with HMAC-SHA256 (SPOOLUP_HOOK_SECRET)"
    )
    serve.add_argument("--hook-timeout", type=float, help="seconds per hook delivery (5)")
    serve.add_argument("--hook-retries", type=int, help="retries of non-blocking hooks (3)")
    serve.add_argument(
        "--hook-progress-interval", type=float, help="seconds between post-receive hooks (1)"
    )


_OPERATOR_SETTINGS = (
    "log_format",
    "metrics",
    "metrics_port",
    "hook_url",
    "hook_secret",
    "hook_timeout",
    "hook_retries",
    "hook_progress_interval",
)


def _size(value: str) -> int:
    """A byte count for argparse: ``1048576``, ``512KiB``, ``8MiB``, ``1GB``..."""
    from spoolup.server.config import ConfigError, parse_size

    try:
        return parse_size(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _chunk_size(value: str) -> int:
    size = _size(value)
    if size < 1:
        msg = "the chunk size must be at least 1 byte"
        raise argparse.ArgumentTypeError(msg)
    return size


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
    from spoolup.server.protocol import connection_limits, guarded_protocol, raise_fd_limit

    names = ["host", "port", "storage", "token", "insecure", "log_level", "access_log"]
    names += ["lock", "lease"]
    names += [name for name, _ in _LIMIT_FLAGS] + ["inspect_max_size", *_OPERATOR_SETTINGS]
    names += ["header_limit", "header_timeout", "body_timeout", "max_connections"]
    names += ["allowed_hosts", "cors_origins"]
    overrides = {name: getattr(args, name) for name in names}
    try:
        config = load_config(file=args.config, environ=environ, overrides=overrides)
        app = create_app(config)
    except ConfigError as exc:
        sys.stderr.write(f"spoolup serve: {exc}\n")
        return EXIT_USAGE
    configure_logging(config.log_level, access_log=config.access_log, log_format=config.log_format)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        http=guarded_protocol(connection_limits(config), fd_limit=raise_fd_limit()),
        log_config=uvicorn_log_config(config.log_level, config.log_format),
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


def upload_tus(
    client: Any,
    path: Path,
    *,
    endpoint: str,
    chunk_size: int,
    retries: int,
    progress: Callable[[int | None, int], None],
    resumed: Callable[[int, int], None] = lambda offset, total: None,
) -> dict[str, Any]:
    """Upload one file by tus to ``endpoint`` and return the server's record, checked.

    Continues an interrupted upload of the same file (``resumed(offset, total)`` says
    so); ``progress(completed, total)`` as in :func:`upload_one`. The record's sha256
    is checked against the local file's, read while sending (and, for the bytes the
    server already had, read again locally). Raises :class:`UploadFailed`.
    """
    from spoolup.tus_client import TusClientError, tus_upload

    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    first = True

    def report(sent: int, total: int) -> None:
        nonlocal first
        if first and sent > 0:
            resumed(sent, total)
        first = False
        progress(sent, total)

    try:
        result = tus_upload(
            path,
            endpoint,
            chunk_size=chunk_size,
            content_type=content_type,
            progress=report,
            retries=retries,
            client=client,
        )
    except OSError as exc:
        msg = f"cannot read the file: {exc.strerror}"
        raise UploadFailed(msg) from exc
    except TusClientError as exc:
        hint = " (pass --token or set SPOOLUP_TOKEN)" if exc.status == 401 else ""
        raise UploadFailed(f"{exc}{hint}") from exc
    record = result.record
    if record is None:
        msg = "the upload finished, but the server did not send the file's record"
        raise UploadFailed(msg)
    if record.get("sha256") != result.sha256:
        msg = (
            f"sha256 mismatch: the server stored {record.get('sha256')}, "
            f"the file sent has {result.sha256}"
        )
        raise UploadFailed(msg)
    return record


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

            def resumed(offset: int, total: int, task: Any = task, name: str = path.name) -> None:
                bars.update(task, description=f"{name} (resumed)")
                console.print(
                    f"spoolup upload: {name}: resuming at {offset} of {total} bytes",
                    highlight=False,
                    soft_wrap=True,
                )

            try:
                if _by_tus(path, args.tus_threshold):
                    record = upload_tus(
                        client,
                        path,
                        endpoint=f"{args.url.rstrip('/')}/tus/",
                        chunk_size=args.chunk_size,
                        retries=args.retries,
                        progress=progress,
                        resumed=resumed,
                    )
                else:
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


def _by_tus(path: Path, threshold: int) -> bool:
    """Whether ``path`` goes by tus: at least ``threshold`` bytes (a missing file: no)."""
    try:
        return path.stat().st_size >= threshold
    except OSError:
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
