"""``spoolup upload``: send files and folders to a server (or an upload link), checked.

Each file is checked against the server's limits (``GET /api/limits``) before a byte of
it is sent, so a file the server would refuse is reported at once and never sent. A
file already on the server (same name, size and sha256) is skipped, so running the
same command again after an interruption sends only what is missing. Files of
``--tus-threshold`` bytes or more go by tus (resumable: an interrupted one continues
from the server's offset, the upload URL being kept in the user's cache folder);
smaller ones in one streamed ``PUT /api/files/{name}``, started again after a
connection error. Each file's record is printed as one JSON line on standard output;
progress, failures and a summary line go to standard error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from spoolup._mediatype import media_type_of_name
from spoolup._units import format_duration, format_size, plural
from spoolup.commands.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandFailed,
    add_server_options,
    check,
    epilog,
    open_client,
    request,
    server_error,
    server_url,
    warn,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["UploadFailed", "add_parser", "run", "upload_one", "upload_tus"]

CHUNK_SIZE = 1024 * 1024
TUS_THRESHOLD = 8 * 1024 * 1024
"""Files of this many bytes or more are sent by tus (resumable) unless told otherwise."""
TUS_CHUNK_SIZE = 8 * 1024 * 1024
_UPLOAD_LINK = re.compile(r"/u/[^/]+")

EXAMPLES = """\
  spoolup upload report.pdf photos/                 # a file and a whole folder
  spoolup upload --url https://files.example.org --token $TOKEN backup.tar
  spoolup upload --url https://files.example.org/u/LINK scan.pdf   # with an upload link
  spoolup upload big.iso --tus-threshold 0 --chunk-size 16MiB       # every file resumable"""


class UploadFailed(Exception):
    """One file could not be uploaded; the message says why, in the server's words."""


def add_parser(commands: Any) -> None:
    """Add ``upload`` to the subcommands."""
    parser = commands.add_parser(
        "upload",
        help="upload files and folders to a spoolup server",
        description=(
            "Upload files (and every file in the folders given) to a spoolup server, "
            "check each one's sha256, and print each record as a JSON line. Files the "
            "server would refuse are reported before anything is sent; files already "
            "there (same name, size and sha256) are skipped, so running the same command "
            "again after an interruption resumes it."
        ),
        epilog=epilog(EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="files or folders")
    add_server_options(parser)
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="retries per file on connection errors (5)",
    )
    parser.add_argument(
        "--tus-threshold",
        type=size_arg,
        default=TUS_THRESHOLD,
        metavar="SIZE",
        help="send files of this size or more by tus, resumable (8MiB; 0: every file)",
    )
    parser.add_argument(
        "--chunk-size",
        type=chunk_size_arg,
        default=TUS_CHUNK_SIZE,
        metavar="SIZE",
        help="bytes per tus request (8MiB)",
    )
    parser.add_argument(
        "--again", action="store_true", help="send files even when the server already has them"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def size_arg(value: str) -> int:
    """A byte count for argparse: ``1048576``, ``512KiB``, ``8MiB``, ``1GB``..."""
    from spoolup.server.config import ConfigError, parse_size

    try:
        return parse_size(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def chunk_size_arg(value: str) -> int:
    """A tus chunk size: at least one byte."""
    size = size_arg(value)
    if size < 1:
        msg = "the chunk size must be at least 1 byte"
        raise argparse.ArgumentTypeError(msg)
    return size


# ---------------------------------------------------------------- one file


def _file_chunks(path: Path, digest: Any, advance: Callable[[int], None]) -> Iterator[bytes]:
    """Read ``path`` a chunk at a time, hashing and reporting each chunk as it is sent."""
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
            advance(len(chunk))
            yield chunk


def _checked(record: dict[str, Any], sha256: str) -> dict[str, Any]:
    if record.get("sha256") != sha256:
        msg = (
            f"sha256 mismatch: the server stored {record.get('sha256')}, the file sent has {sha256}"
        )
        raise UploadFailed(msg)
    return record


def upload_one(
    client: httpx.Client,
    path: Path,
    *,
    retries: int,
    progress: Callable[[int | None, int], None],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Upload one file by ``PUT`` and return the server's record, its sha256 checked.

    ``progress(completed, total)`` is called with the bytes sent. On a connection error
    the upload starts again from the first byte after a pause of 0.5, 1, 2, ... seconds
    (at most 10), ``retries`` times. Raises :class:`UploadFailed`.
    """
    import httpx

    try:
        size = path.stat().st_size
    except OSError as exc:
        msg = f"cannot read the file: {exc.strerror}"
        raise UploadFailed(msg) from exc
    content_type = media_type_of_name(path.name)
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
            raise UploadFailed(f"{response.status_code}: {server_error(response)}")
        if sent != size:
            msg = f"the file changed while it was sent ({size} bytes, then {sent})"
            raise UploadFailed(msg)
        return _checked(response.json(), digest.hexdigest())
    raise AssertionError  # pragma: no cover  (the loop returns or raises)


def upload_tus(
    client: httpx.Client,
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
    so); ``progress(completed, total)`` as in :func:`upload_one`. Raises
    :class:`UploadFailed`.
    """
    from spoolup.tus.client import TusClientError, tus_upload

    content_type = media_type_of_name(path.name)
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
        hint = ""
        if exc.status == 401:
            hint = " (pass --token or set SPOOLUP_TOKEN)"
        elif exc.status is None:  # no answer: the server keeps what it took
            hint = "; run the same command again to resume where the server stopped"
        raise UploadFailed(f"{exc}{hint}") from exc
    if result.record is None:
        msg = "the upload finished, but the server did not send the file's record"
        raise UploadFailed(msg)
    return _checked(result.record, result.sha256)


def upload_with_link(client: httpx.Client, path: Path, link: str) -> dict[str, Any]:
    """Upload one file through an upload link (``POST <link>/files``); the checked answer."""
    import httpx

    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_SIZE):
                digest.update(chunk)
            file.seek(0)
            content_type = media_type_of_name(path.name)
            response = client.post(f"{link}/files", files={"file": (path.name, file, content_type)})
    except OSError as exc:
        msg = f"cannot read the file: {exc.strerror}"
        raise UploadFailed(msg) from exc
    except httpx.TransportError as exc:
        msg = f"{exc.__class__.__name__}: {exc}"
        raise UploadFailed(msg) from exc
    if response.status_code != 201:
        raise UploadFailed(f"{response.status_code}: {server_error(response)}")
    return _checked(response.json()[0], digest.hexdigest())


# ---------------------------------------------------------------- the command


def expand(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files to send (folders walked, in name order) and the paths that are not files."""
    files: list[Path] = []
    bad: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        elif path.is_file():
            files.append(path)
        else:
            bad.append((path, "no such file or folder"))
    return files, bad


@dataclass
class _Tally:
    total: int
    done: list[int] = field(default_factory=list)
    skipped: int = 0
    failed: int = 0
    current: Path | None = None
    by_tus: bool = False
    sent: int = 0

    def summary(self, seconds: float) -> str:
        parts = [f"{len(self.done)} uploaded ({format_size(sum(self.done))})"]
        if self.skipped:
            parts.append(f"{self.skipped} already there")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return f"{', '.join(parts)} of {plural(self.total, 'file')} in {format_duration(seconds)}"


def _limits(client: httpx.Client, link: str | None) -> dict[str, Any] | None:
    """What the server takes (``None`` from a server too old to say)."""
    response = request(client, "GET", f"{link}/limits" if link else "/api/limits")
    if response.status_code == 404 and not link:
        return None
    limits: dict[str, Any] = check(response).json()
    return limits


def refusal(path: Path, size: int, limits: dict[str, Any] | None, by_tus: bool) -> str | None:
    """Why the server would refuse this file, in words, or ``None``."""
    if limits is None:
        return None
    largest = int(limits["max_file_size"])
    if not by_tus and "max_body_size" in limits:
        largest = min(largest, int(limits["max_body_size"]))
    if size > largest:
        return (
            f"{path.name} is {format_size(size)}; this server takes files up to "
            f"{format_size(largest)} (nothing was sent)"
        )
    return None


def _already_there(client: httpx.Client, path: Path, size: int) -> dict[str, Any] | None:
    """The server's record of this very file (name, size, sha256), if it has one."""
    found = check(request(client, "GET", "/api/files", params={"q": path.name})).json()
    same = [r for r in found if r["filename"] == path.name and r["size"] == size]
    if not same:
        return None
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return next((r for r in same if r["sha256"] == digest.hexdigest()), None)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``spoolup upload``: send each file, print each record; see the module docstring."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    started = time.monotonic()
    files, missing = expand(args.paths)
    tally = _Tally(total=len(files) + len(missing))
    for path, why in missing:
        tally.failed += 1
        warn("upload", f"{path}: {why}")
    url = server_url(args, environ)
    link_match = _UPLOAD_LINK.search(urlsplit(url).path)
    link = url if link_match else None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    if link is not None:
        # An upload link may point at another server: it never gets this one's token.
        environ = {k: v for k, v in environ.items() if k != "SPOOLUP_TOKEN"}
        args.token = None
    try:
        with (
            open_client(args, environ) as client,
            Progress(*columns, console=console, disable=args.quiet) as bars,
        ):
            limits = _limits(client, link)
            for path in files:
                _send(args, client, path, limits, link, tally, bars, console)
    except KeyboardInterrupt:
        summary = tally.summary(time.monotonic() - started)
        console.print(f"\nspoolup upload: interrupted. {summary}.")
        console.print(_resume_hint(tally))
        return EXIT_INTERRUPTED
    except CommandFailed as exc:
        warn("upload", str(exc))
        return exc.code
    console.print(f"spoolup upload: {tally.summary(time.monotonic() - started)}")
    return EXIT_FAILED if tally.failed else EXIT_OK


def _resume_hint(tally: _Tally) -> str:
    if tally.current is not None and tally.by_tus:
        return (
            f"Run the same command again to resume: {tally.current.name} continues from "
            f"where the server stopped ({format_size(tally.sent)} sent), and files already "
            f"stored are skipped."
        )
    return "Run the same command again to resume: files already stored are skipped."


def _send(  # noqa: PLR0917  (one call site, all needed)
    args: argparse.Namespace,
    client: httpx.Client,
    path: Path,
    limits: dict[str, Any] | None,
    link: str | None,
    tally: _Tally,
    bars: Any,
    console: Any,
) -> None:
    """Send one file and count how it went (failures are reported, not raised)."""
    task = bars.add_task(path.name, total=None)
    tally.current, tally.sent = path, 0

    def progress(completed: int | None, total: int) -> None:
        if completed is not None:
            tally.sent = completed
        bars.update(task, completed=completed, total=total)

    def resumed(offset: int, total: int) -> None:
        bars.update(task, description=f"{path.name} (resumed)")
        console.print(
            f"spoolup upload: {path.name}: resuming at {format_size(offset)} "
            f"of {format_size(total)}"
        )

    def failed(why: object) -> None:
        tally.failed += 1
        bars.update(task, description=f"[red]{path.name} failed")
        console.print(f"[red]spoolup upload: {path}: {why}[/red]")

    try:
        size = path.stat().st_size
    except OSError as exc:
        failed(f"cannot read the file: {exc.strerror}")
        return
    bars.update(task, total=size, completed=0)
    tally.by_tus = link is None and size >= args.tus_threshold
    reason = refusal(path, size, limits, tally.by_tus)
    if reason is not None:
        failed(reason)
        return
    try:
        if link is None and not args.again and (found := _already_there(client, path, size)):
            tally.skipped += 1
            bars.update(task, completed=size, description=f"[green]{path.name} (already there)")
            sys.stdout.write(json.dumps(found) + "\n")
            return
        if link is not None:
            record = upload_with_link(client, path, link)
            progress(size, size)
        elif tally.by_tus:
            record = upload_tus(
                client,
                path,
                endpoint=f"{str(client.base_url).rstrip('/')}/tus/",
                chunk_size=args.chunk_size,
                retries=args.retries,
                progress=progress,
                resumed=resumed,
            )
        else:
            record = upload_one(client, path, retries=args.retries, progress=progress)
    except UploadFailed as exc:
        failed(exc)
        return
    except OSError as exc:
        failed(f"cannot read the file: {exc.strerror}")
        return
    tally.current = None
    tally.done.append(size)
    bars.update(task, description=f"[green]{path.name}")
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
