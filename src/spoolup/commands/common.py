"""What every client command shares: server options, the HTTP client, errors, exit codes.

The commands import ``httpx`` (``spoolup[server]``) only when they run, so that
``spoolup --help`` works, and a missing extra is one clear line (see :mod:`spoolup.cli`),
with the core package alone.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ENVIRONMENT",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SERVER",
    "EXIT_USAGE",
    "CommandFailed",
    "add_server_options",
    "epilog",
    "open_client",
    "server_error",
    "shown",
    "warn",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVER = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = """\
exit status:
  0    everything asked for was done
  1    at least one file failed (refused, missing, checksum mismatch); the others were done
  2    the command line or the settings are wrong
  3    the server could not be reached, or refused the token
  130  interrupted (Ctrl-C); run the same command again to resume"""

ENVIRONMENT = """\
environment:
  SPOOLUP_URL     the server, when --url is not given (http://127.0.0.1:8000)
  SPOOLUP_TOKEN   the bearer token, when --token is not given"""

_FILE_ID = re.compile(r"[0-9a-f]{32}")


def epilog(examples: str, *, environment: str = ENVIRONMENT) -> str:
    """The end of a command's ``--help``: examples, environment variables, exit codes."""
    return f"examples:\n{examples}\n\n{environment}\n\n{EXIT_CODES}"


class CommandFailed(Exception):
    """The command cannot go on; ``code`` is the exit status, the message says why."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token`` and ``--timeout``, shared by every client command."""
    parser.add_argument(
        "--url", help="the server (SPOOLUP_URL; http://127.0.0.1:8000)", metavar="URL"
    )
    parser.add_argument("--token", help="bearer token (SPOOLUP_TOKEN)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="seconds of silence (60)"
    )


def server_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The server's base URL, without a trailing slash."""
    url: str = args.url or environ.get("SPOOLUP_URL") or "http://127.0.0.1:8000"
    return url.rstrip("/")


def open_client(args: argparse.Namespace, environ: Mapping[str, str]) -> httpx.Client:
    """An HTTP client for the server, carrying the token when there is one."""
    import httpx

    token = args.token or environ.get("SPOOLUP_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx.Timeout(args.timeout, connect=min(10.0, args.timeout))
    return httpx.Client(base_url=server_url(args, environ), headers=headers, timeout=timeout)


def server_error(response: httpx.Response) -> str:
    """The server's ``{"error": ...}`` in a sentence, with a hint for a missing token."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    text = error if isinstance(error, str) else (response.text[:200] or response.reason_phrase)
    hint = " (pass --token or set SPOOLUP_TOKEN)" if response.status_code == 401 else ""
    return f"{text}{hint}"


def check(response: httpx.Response) -> httpx.Response:
    """``response`` if it succeeded; raises :class:`CommandFailed` with the reason otherwise."""
    if response.is_success:
        return response
    code = EXIT_SERVER if response.status_code in {401, 403} else EXIT_FAILED
    raise CommandFailed(server_error(response), code)


def request(client: httpx.Client, method: str, url: str, **options: Any) -> httpx.Response:
    """One request; an unreachable server is a :class:`CommandFailed` (exit status 3)."""
    import httpx

    try:
        return client.request(method, url, **options)
    except httpx.TransportError as exc:
        msg = f"cannot reach {client.base_url or url}: {exc or exc.__class__.__name__}"
        raise CommandFailed(msg, EXIT_SERVER) from exc


def resolve(client: httpx.Client, what: str) -> dict[str, Any]:
    """The record of the file ``what`` names: its id, or its exact name if only one has it."""
    if _FILE_ID.fullmatch(what):
        head = request(client, "HEAD", f"/api/files/{what}")
        if head.status_code == 404:
            msg = f"no file has the id {what}"
            raise CommandFailed(msg)
        check(head)
        return {
            "id": what,
            "filename": filename_of(head) or what,
            "size": int(head.headers.get("content-length", 0)),
            "sha256": head.headers.get("etag", "").strip('"'),
        }
    found = check(request(client, "GET", "/api/files", params={"q": what})).json()
    same = [r for r in found if r["filename"] == what]
    if not same:
        msg = f"no file is named {what!r} (see `spoolup ls`)"
        raise CommandFailed(msg)
    if len(same) > 1:
        ids = ", ".join(r["id"] for r in same)
        msg = f"{len(same)} files are named {what!r}: give one of their ids ({ids})"
        raise CommandFailed(msg)
    return dict(same[0])


def filename_of(response: httpx.Response) -> str | None:
    """The file name a download's ``Content-Disposition`` gives, if any."""
    value = response.headers.get("content-disposition", "")
    match = re.search(r"filename\*=UTF-8''([^;]+)", value)
    if match:
        return unquote(match.group(1))
    match = re.search(r'filename="([^"]*)"', value)
    return match.group(1) if match else None


def shown(text: str) -> str:
    """``text`` safe for a terminal: a server's names and errors carry no control codes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


def warn(command: str, message: str) -> None:
    """One line on standard error, prefixed with the command's name."""
    sys.stderr.write(f"spoolup {command}: {shown(message)}\n")
    sys.stderr.flush()


def environ() -> Mapping[str, str]:
    """The process environment (a function, so that tests can call commands directly)."""
    return os.environ
