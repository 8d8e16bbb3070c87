"""The ``spoolup`` command: ``serve`` runs the upload server; the others are its client."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

from spoolup.commands import files, upload
from spoolup.commands.common import (
    ENVIRONMENT,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_USAGE,
)

__all__ = ["main"]

_LIMIT_FLAGS = (
    ("max_body_size", "SIZE", "bytes in one request body (10GiB)"),
    ("max_file_size", "SIZE", "bytes in one file (10GiB)"),
    ("max_files", "N", "files in one request (1000)"),
    ("max_fields", "N", "non-file fields in one request (1000)"),
    ("max_field_size", "SIZE", "bytes in one non-file field (1MiB)"),
    ("max_header_size", "SIZE", "bytes in one part's header block (8KiB)"),
    ("max_headers", "N", "header lines in one part (32)"),
    ("memory_threshold", "SIZE", "bytes of a file kept in memory before it spools to disk (1MiB)"),
)

SERVE_EXAMPLES = """\
examples:
  spoolup serve                                   # http://127.0.0.1:8000, files in ./spoolup-data
  spoolup serve --host 0.0.0.0 --token $TOKEN --max-file-size 2GB
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 spoolup serve --storage s3://uploads/team

environment:
  SPOOLUP_<SETTING>  any setting above, e.g. SPOOLUP_TOKEN, SPOOLUP_MAX_FILE_SIZE=2GiB,
                     SPOOLUP_SHARE_SECRET (signs links; give several servers the same one)
  SPOOLUP_CONFIG     a TOML file of settings (flags win over the environment, which wins
                     over the file)
  AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION   for s3:// storage

exit status:
  0    stopped (Ctrl-C or SIGTERM) after finishing the running requests
  2    the settings are wrong (a port is taken...), or a package is missing (the
       message says which)
  3    the storage cannot be reached or written
"""


def _build_parser() -> argparse.ArgumentParser:
    from spoolup.server.about import spoolup_version

    parser = argparse.ArgumentParser(
        prog="spoolup",
        description="Receive file uploads: a server, and a client for it.",
        epilog=(
            "examples:\n  spoolup serve\n  spoolup upload report.pdf photos/\n"
            "  spoolup ls\n  spoolup get report.pdf\n  spoolup share report.pdf --ttl 1d\n"
            "  spoolup rm report.pdf\n\nRun `spoolup COMMAND --help` for each one.\n\n"
            f"{ENVIRONMENT}\n\n{EXIT_CODES}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spoolup {spoolup_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the upload server",
        description="Run the upload server (web page, HTTP API, tus) on uvicorn.",
        epilog=SERVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (8000; 0 picks a free one)")
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
    for name, metavar, what in _LIMIT_FLAGS:
        serve.add_argument(f"--{name.replace('_', '-')}", metavar=metavar, help=what)
    serve.add_argument(
        "--inspect-max-size", metavar="SIZE", help="bytes of an image to inspect (2MiB)"
    )
    serve.add_argument(
        "--share-ttl",
        metavar="DURATION",
        help="how long share and upload links last, at most (7d; 3600, 15m, 12h...)",
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
    serve.add_argument(
        "--min-body-rate", metavar="SIZE", help="bytes a second a body must average (1KiB; 0 off)"
    )
    serve.add_argument(
        "--max-connections", type=int, metavar="N", help="open connections at most (4096)"
    )
    serve.add_argument(
        "--sweep-interval", type=float, metavar="S", help="seconds between leftover sweeps (300)"
    )
    serve.add_argument(
        "--min-free-space", metavar="SIZE", help="free room /healthz requires (64MiB)"
    )
    serve.add_argument(
        "--part-budget",
        metavar="SIZE",
        help="S3 part buffers held past which uploads send one part at a time (64MiB)",
    )
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
    _add_tus_flags(serve)
    upload.add_parser(commands)
    files.add_parsers(commands)
    return parser


def _add_operator_flags(serve: argparse.ArgumentParser) -> None:
    """Logs, metrics and hooks (see spoolup.server.logs, .metrics and .hooks)."""
    serve.add_argument("--log-format", choices=["plain", "json"], help="(plain)")
    serve.add_argument(
        "--no-metrics", dest="metrics", action="store_false", default=None, help="no /metrics"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics on this port instead (no token; 0 picks a free one)",
    )
    serve.add_argument("--hook-url", help="POST tusd-style hook requests here", metavar="URL")
    serve.add_argument(
        "--hook-secret",
        metavar="SECRET",
        help="sign hook requests with HMAC-SHA256 (SPOOLUP_HOOK_SECRET)",
    )
    serve.add_argument(
        "--hook-timeout", type=float, metavar="S", help="seconds per hook delivery (5)"
    )
    serve.add_argument(
        "--hook-retries", type=int, metavar="N", help="retries of non-blocking hooks (3)"
    )
    serve.add_argument(
        "--hook-progress-interval",
        type=float,
        metavar="S",
        help="seconds between post-receive hooks (1)",
    )


def _add_tus_flags(serve: argparse.ArgumentParser) -> None:
    """Durability and caps of /tus (see spoolup.tus.app)."""
    serve.add_argument(
        "--tus-checkpoint", metavar="SIZE", help="bytes between tus checkpoints (64MiB)"
    )
    serve.add_argument(
        "--tus-checkpoint-seconds", type=float, metavar="S", help="seconds between them (2)"
    )
    serve.add_argument(
        "--tus-max-open-uploads", type=int, metavar="N", help="unfinished tus uploads (10000)"
    )
    serve.add_argument(
        "--tus-max-open-per-client",
        type=int,
        metavar="N",
        help="unfinished tus uploads of one address (1000; 0 off)",
    )


_TUS_SETTINGS = (
    "tus_checkpoint",
    "tus_checkpoint_seconds",
    "tus_max_open_uploads",
    "tus_max_open_per_client",
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


# The optional packages the commands import when they run, by top-level module, and
# the extra of pyproject.toml that brings each (a test checks this against it).
EXTRA_OF_MODULE = {
    "httpx": "server",
    "uvicorn": "server",
    "starlette": "server",
    "PIL": "server",
    "rich": "server",
    "prometheus_client": "server",
    "pythonjsonlogger": "server",
    "puremagic": "server",
    "boto3": "s3",
    "botocore": "s3",
    "redis": "redis",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``spoolup`` command line; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args, os.environ)
        if args.command == "upload":
            return upload.run(args, os.environ)
        return files.run(args, os.environ)
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        install = f"pip install 'spoolup[{extra}]'"
        sys.stderr.write(f"spoolup {args.command}: needs the {exc.name} package: {install}\n")
        return EXIT_USAGE


# ---------------------------------------------------------------- serve


def serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``spoolup serve``: check the settings, open the storage and run uvicorn."""
    import uvicorn

    from spoolup.server.app import create_app
    from spoolup.server.config import ConfigError, load_config
    from spoolup.server.logs import configure_logging, uvicorn_log_config
    from spoolup.server.protocol import connection_limits, guarded_protocol, raise_fd_limit
    from spoolup.server.startup import (
        BannerServer,
        StorageUnusable,
        check_ports,
        limit_malloc_arenas,
        open_checked_store,
    )

    limit_malloc_arenas(environ)

    names = ["host", "port", "storage", "token", "insecure", "log_level", "access_log"]
    names += [name for name, _, _ in _LIMIT_FLAGS] + ["inspect_max_size", "share_ttl"]
    names += [*_OPERATOR_SETTINGS, "header_limit", "header_timeout", "body_timeout"]
    names += ["max_connections", "allowed_hosts", "cors_origins", *_TUS_SETTINGS]
    names += ["lock", "lease"]
    names += ["sweep_interval", "min_free_space", "min_body_rate", "part_budget"]
    overrides = {name: getattr(args, name) for name in names}
    try:
        config = load_config(file=args.config, environ=environ, overrides=overrides)
        check_ports(config)
        app = create_app(config, store=open_checked_store(config.storage))
    except ConfigError as exc:
        sys.stderr.write(f"spoolup serve: {exc}\n")
        return EXIT_USAGE
    except StorageUnusable as exc:
        sys.stderr.write(f"spoolup serve: {exc}\n")
        return EXIT_SERVER
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    configure_logging(config.log_level, access_log=config.access_log, log_format=config.log_format)
    uvicorn_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=guarded_protocol(connection_limits(config), fd_limit=raise_fd_limit()),
        log_config=uvicorn_log_config(config.log_level, config.log_format),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(config.graceful_timeout),
    )
    # uvicorn stops gracefully on Ctrl-C or SIGTERM, then re-raises the signal: SIGTERM is
    # made a KeyboardInterrupt too, so both end here (status 0), not killed by the signal.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        BannerServer(uvicorn_config, config, metrics=app.state.metrics).run()
    sys.stderr.write("spoolup serve: stopped\n")
    return EXIT_OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
