"""``spoolup ls``, ``get``, ``rm`` and ``share``: the files on a server, from a terminal.

``get`` downloads to ``NAME.part`` and renames it when whole: run again after an
interruption, it asks only for the missing bytes (``Range``, guarded by ``If-Range``
so a changed file starts over), then checks the sha256 the server gave (the ``ETag``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from spoolup._units import format_size, plural
from spoolup.commands.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SERVER,
    CommandFailed,
    add_server_options,
    check,
    epilog,
    filename_of,
    open_client,
    request,
    resolve,
    shown,
    warn,
)
from spoolup.headers import safe_filename

if TYPE_CHECKING:
    import httpx

__all__ = ["add_parsers"]

_CHUNK = 1024 * 1024
_SHARE_LINK = re.compile(r"/s/[^/]+$")


def add_parsers(commands: Any) -> None:
    """Add ``ls``, ``get``, ``rm`` and ``share`` to the subcommands."""
    raw = argparse.RawDescriptionHelpFormatter
    ls = commands.add_parser(
        "ls",
        help="list the files on a server",
        description="List the files on a server: name, size, date, id; and the total.",
        epilog=epilog(
            "  spoolup ls                        # the newest 50\n"
            "  spoolup ls report --sort size     # names containing 'report', largest first\n"
            "  spoolup ls --all --json > files.jsonl"
        ),
        formatter_class=raw,
    )
    ls.add_argument("search", nargs="?", default="", help="part of the name, any case")
    ls.add_argument("--sort", choices=["created", "name", "size"], default="created")
    ls.add_argument("--asc", action="store_true", help="smallest, oldest or A first")
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="files to show (50)")
    ls.add_argument("--all", action="store_true", help="every file, page after page")
    ls.add_argument("--json", action="store_true", help="one JSON record a line")
    add_server_options(ls)

    get = commands.add_parser(
        "get",
        help="download a file (resumable, sha256 checked)",
        description=(
            "Download a file by id, by name, or from a share link. Interrupted, it "
            "resumes where it stopped when run again; the sha256 is checked at the end."
        ),
        epilog=epilog(
            "  spoolup get report.pdf\n"
            "  spoolup get 3f2a...e9 -o /tmp/copy.pdf\n"
            "  spoolup get https://files.example.org/s/LINK    # a share link: no token needed"
        ),
        formatter_class=raw,
    )
    get.add_argument("file", metavar="ID|NAME|LINK")
    get.add_argument("-o", "--output", type=Path, metavar="PATH", help="where to write it")
    add_server_options(get)

    rm = commands.add_parser(
        "rm",
        help="delete files",
        description="Delete files by id or by name.",
        epilog=epilog("  spoolup rm old-backup.tar\n  spoolup rm 3f2a...e9 7c1b...04"),
        formatter_class=raw,
    )
    rm.add_argument("files", nargs="+", metavar="ID|NAME")
    add_server_options(rm)

    share = commands.add_parser(
        "share",
        help="make a share link (download) or an upload link",
        description=(
            "Print a signed, expiring link that needs no token: to download one file, "
            "or (--upload) to let someone send you files, and see nothing else. The "
            "server needs a token; its --share-ttl is the longest a link may last."
        ),
        epilog=epilog(
            "  spoolup share report.pdf --ttl 1d\n"
            "  spoolup share --upload --max-size 200MB --max-files 5 --ttl 12h"
        ),
        formatter_class=raw,
    )
    share.add_argument("file", nargs="?", metavar="ID|NAME", help="the file to share")
    share.add_argument("--upload", action="store_true", help="an upload link instead")
    share.add_argument("--ttl", metavar="DURATION", help="how long it lasts: 3600, 15m, 12h, 7d")
    share.add_argument("--max-size", metavar="SIZE", help="upload link: bytes of one file")
    share.add_argument("--max-files", type=int, metavar="N", help="upload link: files (10)")
    add_server_options(share)


# ---------------------------------------------------------------- ls


def run_ls(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``spoolup ls``: a table (or JSON lines) and a total line."""
    shown = 0
    params: dict[str, Any] = {
        "q": args.search,
        "sort": args.sort,
        "order": "asc" if args.asc else "desc",
        "limit": 1000 if args.all else max(1, min(1000, args.limit)),
    }
    with open_client(args, environ) as client:
        response = check(request(client, "GET", "/api/files", params=params))
        matched = int(response.headers.get("spoolup-match-count", 0))
        size = int(response.headers.get("spoolup-match-size", 0))
        while True:
            for record in response.json():
                if not args.all and shown >= args.limit:
                    break
                shown += 1
                sys.stdout.write(_line(record, as_json=args.json))
            cursor = response.headers.get("spoolup-next-cursor")
            if cursor is None or (not args.all and shown >= args.limit):
                break
            response = check(
                request(client, "GET", "/api/files", params={**params, "cursor": cursor})
            )
    what = f" matching {args.search!r}" if args.search else ""
    more = f"; {matched - shown} more (--all, or --limit N)" if matched > shown else ""
    sys.stderr.write(f"{plural(matched, 'file')}{what}, {format_size(size)} in all{more}\n")
    return EXIT_OK


def _line(record: dict[str, Any], *, as_json: bool) -> str:
    if as_json:
        return json.dumps(record) + "\n"
    when = datetime.fromisoformat(record["created"]).astimezone().strftime("%Y-%m-%d %H:%M")
    size = format_size(record["size"])
    return shown(f"{size:>9}  {when}  {record['id']}  {record['filename']}") + "\n"


# ---------------------------------------------------------------- get


def run_get(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``spoolup get``: download, resumable, sha256 checked."""
    import httpx

    if _SHARE_LINK.search(urlsplit(args.file).path):
        # A link may point at another server: it never gets this one's token.
        with httpx.Client(timeout=args.timeout, follow_redirects=False) as anonymous:
            head = check(request(anonymous, "HEAD", args.file))
            name = filename_of(head) or "download"
            dest = _destination(args.output, name)
            _download(anonymous, args.file, dest, head.headers.get("etag", "").strip('"'))
        return EXIT_OK
    with open_client(args, environ) as client:
        record = resolve(client, args.file)
        dest = _destination(args.output, record["filename"])
        _download(client, f"/api/files/{record['id']}", dest, record["sha256"])
    return EXIT_OK


def _destination(output: Path | None, name: str) -> Path:
    name = safe_filename(name)  # a server's name never picks the folder
    dest = output or Path(name)
    return dest / name if dest.is_dir() else dest


def _download(client: httpx.Client, url: str, dest: Path, sha256: str) -> None:
    import httpx

    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'} if have else {}
    digest = hashlib.sha256()
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416:  # the part file is already whole
                response.read()
            else:
                check_stream(response)
            mode = "ab" if response.status_code in {206, 416} else "wb"
            if mode == "ab":
                with part.open("rb") as done:
                    while chunk := done.read(_CHUNK):
                        digest.update(chunk)
                warn("get", f"{dest.name}: resuming at {format_size(have)}")
            with part.open(mode) as out:
                if response.status_code != 416:
                    for chunk in response.iter_bytes(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
    except httpx.TransportError as exc:
        msg = f"the download stopped ({exc}); run the same command again to resume"
        raise CommandFailed(msg) from exc
    if digest.hexdigest() != sha256:
        part.unlink()
        msg = f"sha256 mismatch: got {digest.hexdigest()}, the server said {sha256}; deleted"
        raise CommandFailed(msg)
    part.replace(dest)
    warn("get", f"{dest} ({format_size(dest.stat().st_size)}, sha256 checked)")


def check_stream(response: httpx.Response) -> None:
    """Raise :class:`CommandFailed` for a streamed response that did not succeed."""
    if not response.is_success:
        response.read()
        check(response)


# ---------------------------------------------------------------- rm


def run_rm(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``spoolup rm``: delete each file; one failure does not stop the others."""
    failures = 0
    with open_client(args, environ) as client:
        for what in args.files:
            try:
                record = resolve(client, what)
                check(request(client, "DELETE", f"/api/files/{record['id']}"))
            except CommandFailed as exc:
                if exc.code != EXIT_FAILED:
                    raise
                failures += 1
                warn("rm", f"{what}: {exc}")
                continue
            warn("rm", f"deleted {record['filename']} ({record['id']})")
    return EXIT_FAILED if failures else EXIT_OK


# ---------------------------------------------------------------- share


def run_share(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``spoolup share``: print the link on standard output, its expiry on standard error."""
    body: dict[str, Any] = {"ttl": args.ttl}
    with open_client(args, environ) as client:
        if args.upload:
            body.update(max_size=args.max_size, max_files=args.max_files)
            url = "/api/upload-links"
        elif args.file:
            url = f"/api/files/{resolve(client, args.file)['id']}/share"
        else:
            msg = "name the file to share, or pass --upload for an upload link"
            raise CommandFailed(msg, 2)
        body = {k: v for k, v in body.items() if v is not None}
        made = check(request(client, "POST", url, json=body)).json()
    sys.stdout.write(made["url"] + "\n")
    caps = ""
    if args.upload:
        files = plural(made["max_files"], "file")
        caps = f"; up to {files} of {format_size(made['max_size'])} each"
    sys.stderr.write(f"valid until {made['expires']}{caps}\n")
    return EXIT_OK


RUNNERS = {"ls": run_ls, "get": run_get, "rm": run_rm, "share": run_share}
"""The function that runs each command of this module."""


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run one of ``ls``, ``get``, ``rm``, ``share``; a :class:`CommandFailed` is reported."""
    try:
        return RUNNERS[args.command](args, environ)
    except CommandFailed as exc:
        warn(args.command, str(exc))
        return exc.code
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        # Records and headers come from the server: a broken or hostile one gets a sentence.
        problem = f"{type(exc).__name__}: {exc}"
        warn(args.command, f"the server's answer is not one spoolup understands ({problem})")
        return EXIT_SERVER
    except KeyboardInterrupt:
        hint = " run the same command again to resume." if args.command == "get" else ""
        warn(args.command, f"interrupted;{hint}" if hint else "interrupted")
        return EXIT_INTERRUPTED
