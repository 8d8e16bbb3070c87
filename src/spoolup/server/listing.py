"""``GET /api/files``: search, sort and page the stored files without relisting storage.

The server keeps an index of the file records (:class:`FileIndex`). It is filled once
from storage, then brought up to date by a plain key listing (no metadata request per
object: one S3 ``ListObjectsV2`` call per 1,000 files) when it is older than
``max_age`` seconds or this server changed a file: only the objects it has not seen
are described (``stat``), and keys gone from storage are dropped. Records never change
once written (a file id is never reused), so a known key needs no second look, but for
one: on S3 a file's sha256 is tagged just after the object appears, so a record seen
without it in its first minute is described again. Every page of every query is
answered from the index.

Pages are cut with a cursor: the sort value and id of the last record sent, so a page
stays right when files are added or removed in between (keyset paging).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from spoolup.errors import MalformedRequest
from spoolup.server.records import FileRecord, is_file_id
from spoolup.server.store import FILES_PREFIX, RecordStore

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "FileIndex", "Page", "list_files"]

DEFAULT_PAGE = 1000
"""Records in one page of ``GET /api/files`` unless ``limit`` asks for fewer."""
MAX_PAGE = 1000
"""The most records one page holds."""
_MAX_QUERY = 200
_MAX_CURSOR = 1024
_STAT_BATCH = 32
_SORTS = ("created", "name", "size")
# How long a record without its sha256 may still be waiting for it (see the docstring).
_UNHASHED_WAIT = timedelta(seconds=60)


def _sort_value(record: FileRecord, sort: str) -> str | int:
    if sort == "name":
        return record.filename.casefold()
    if sort == "size":
        return record.size
    created: str = record.to_json()["created"]
    return created


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query.

    Attributes:
        records: the records of this page, in order.
        next_cursor: pass it back as ``cursor`` for the next page; ``None`` on the last.
        matched: how many records match the search, and their total size in bytes.
        total: how many records are stored, and their total size in bytes.
    """

    records: list[FileRecord]
    next_cursor: str | None
    matched: tuple[int, int]
    total: tuple[int, int]


class FileIndex:
    """The file records of a :class:`RecordStore`, kept in memory (see the module docstring).

    ``max_age``: seconds a listing is trusted before the next query checks storage
    again (files added or removed by other servers sharing the storage show up then).
    """

    def __init__(self, store: RecordStore, *, max_age: float = 2.0) -> None:
        self.store = store
        self.max_age = max_age
        self._records: dict[str, FileRecord] = {}
        self._loaded_at: float | None = None
        self._changes = 0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """This server changed a file: the next query checks storage first."""
        self._loaded_at = None
        self._changes += 1

    async def refresh(self) -> None:
        """Bring the index up to date with storage (one key listing, ``stat`` of new keys)."""
        async with self._lock:
            if self._fresh():
                return
            started = time.monotonic()
            changes = self._changes
            keys: set[str] = set()
            token = None
            while True:
                page = await self.store.storage.alist(FILES_PREFIX, token=token)
                keys.update(
                    file_id
                    for info in page.items
                    if is_file_id(file_id := info.key.removeprefix(FILES_PREFIX))
                )
                token = page.next_token
                if token is None:
                    break
            for gone in self._records.keys() - keys:
                del self._records[gone]
            young = datetime.now(UTC) - _UNHASHED_WAIT
            new = sorted(
                (keys - self._records.keys())
                | {i for i, r in self._records.items() if not r.sha256 and r.created > young}
            )
            for start in range(0, len(new), _STAT_BATCH):
                batch = new[start : start + _STAT_BATCH]
                found = await asyncio.gather(*(self.store.get(i) for i in batch))
                self._records.update((r.id, r) for r in found if r is not None)
            # A file changed while this listing ran may be missing from it: stay stale.
            if self._changes == changes:
                self._loaded_at = started

    def _fresh(self) -> bool:
        return self._loaded_at is not None and time.monotonic() - self._loaded_at < self.max_age

    async def query(
        self,
        *,
        search: str = "",
        sort: str = "created",
        descending: bool = True,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page:
        """One page of the records whose name contains ``search`` (any case), sorted.

        Raises :class:`~spoolup.errors.MalformedRequest` for an unknown sort or a bad
        cursor.
        """
        if sort not in _SORTS:
            msg = f"sort must be one of {', '.join(_SORTS)}, not {sort!r}"
            raise MalformedRequest(msg)
        await self.refresh()
        records = list(self._records.values())
        total = (len(records), sum(r.size for r in records))
        needle = search.casefold()
        if needle:
            records = [r for r in records if needle in r.filename.casefold()]
        matched = (len(records), sum(r.size for r in records))
        records.sort(key=lambda r: (_sort_value(r, sort), r.id), reverse=descending)
        if cursor is not None:
            after = _decode_cursor(cursor, sort)
            if descending:
                records = [r for r in records if (_sort_value(r, sort), r.id) < after]
            else:
                records = [r for r in records if (_sort_value(r, sort), r.id) > after]
        page = records[:limit]
        next_cursor = None
        if len(records) > limit:
            last = page[-1]
            next_cursor = _encode_cursor(_sort_value(last, sort), last.id)
        return Page(page, next_cursor, matched, total)


def _encode_cursor(value: str | int, file_id: str) -> str:
    raw = json.dumps([value, file_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[str | int, str]:
    bad = MalformedRequest("the cursor is not one this server gave: start from the first page")
    if len(cursor) > _MAX_CURSOR:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, file_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise bad from None
    want = int if sort == "size" else str
    if not isinstance(value, want) or isinstance(value, bool) or not isinstance(file_id, str):
        raise bad
    return value, file_id


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        msg = f"{name} must be a whole number from {low} to {high}"
        raise MalformedRequest(msg)
    return max(low, min(high, int(value)))


async def list_files(request: Request) -> Response:
    """``GET /api/files``: a JSON list of records, one page of them.

    Query: ``q`` (part of the name, any case), ``sort`` (``created``, ``name`` or
    ``size``), ``order`` (``desc``, the default, or ``asc``), ``limit`` (1 to 1000,
    1000 by default), ``cursor`` (from the previous page). Headers: ``Spoolup-Total-Count``
    and ``Spoolup-Total-Size`` (every stored file), ``Spoolup-Match-Count`` and
    ``Spoolup-Match-Size`` (those matching ``q``), and, when there is a next page,
    ``Spoolup-Next-Cursor`` and ``Link: <...>; rel="next"``.
    """
    index: FileIndex = request.app.state.file_index
    params = request.query_params
    search = params.get("q", "")[:_MAX_QUERY]
    sort = params.get("sort", "created")
    order = params.get("order", "desc")
    if order not in {"asc", "desc"}:
        msg = f"order must be asc or desc, not {order!r}"
        raise MalformedRequest(msg)
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    page = await index.query(
        search=search,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        cursor=params.get("cursor") or None,
    )
    headers = {
        "Spoolup-Total-Count": str(page.total[0]),
        "Spoolup-Total-Size": str(page.total[1]),
        "Spoolup-Match-Count": str(page.matched[0]),
        "Spoolup-Match-Size": str(page.matched[1]),
    }
    if page.next_cursor is not None:
        query: dict[str, Any] = {"sort": sort, "order": order, "limit": limit}
        if search:
            query["q"] = search
        query["cursor"] = page.next_cursor
        headers["Spoolup-Next-Cursor"] = page.next_cursor
        headers["Link"] = f'</api/files?{urlencode(query)}>; rel="next"'
    return JSONResponse([r.to_json() for r in page.records], headers=headers)
