"""GET /api/files: search, sort, cursor paging, totals; storage is not relisted per page."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from spoolup.server.listing import FileIndex
from spoolup.server.store import RecordStore
from spoolup.storage import ListPage, ObjectInfo, ObjectMeta, ObjectNotFound
from spoolup.storage.local import LocalStorage
from spoolup.storage.s3 import S3Storage
from tests.seaweed import Seaweed
from tests.server.conftest import RunningServer


@pytest.fixture(scope="module")
def filled(make_server: Callable[..., RunningServer]) -> RunningServer:
    running = make_server()
    with running.client() as client:
        for i, (name, size) in enumerate(
            [("b-report.pdf", 30), ("A-photo.png", 10), ("c-Report-old.pdf", 20), ("d.txt", 5)]
        ):
            assert client.put(f"/api/files/{name}", content=bytes([i]) * size).status_code == 201
    return running


def names(response: Any) -> list[str]:
    return [r["filename"] for r in response.json()]


def test_sorts_by_name_size_and_date(filled: RunningServer) -> None:
    with filled.client() as client:
        assert names(client.get("/api/files")) == [
            "d.txt",
            "c-Report-old.pdf",
            "A-photo.png",
            "b-report.pdf",
        ]
        assert names(client.get("/api/files?sort=name&order=asc"))[:2] == [
            "A-photo.png",
            "b-report.pdf",
        ]
        assert names(client.get("/api/files?sort=size"))[0] == "b-report.pdf"
        assert names(client.get("/api/files?sort=size&order=asc"))[0] == "d.txt"


def test_search_is_case_blind_and_totals_are_given(filled: RunningServer) -> None:
    with filled.client() as client:
        response = client.get("/api/files", params={"q": "REPORT"})
    assert sorted(names(response)) == ["b-report.pdf", "c-Report-old.pdf"]
    assert response.headers["spoolup-match-count"] == "2"
    assert response.headers["spoolup-match-size"] == "50"
    assert response.headers["spoolup-total-count"] == "4"
    assert response.headers["spoolup-total-size"] == "65"


def test_cursor_pages_cover_every_file_once(filled: RunningServer) -> None:
    seen: list[str] = []
    with filled.client() as client:
        url = "/api/files?sort=name&order=asc&limit=1"
        response = client.get(url)
        while True:
            seen += names(response)
            cursor = response.headers.get("spoolup-next-cursor")
            if cursor is None:
                assert "link" not in response.headers
                break
            link = response.headers["link"]
            assert link.endswith('>; rel="next"')
            assert cursor in link
            response = client.get(link[1 : link.index(">")])
    assert seen == ["A-photo.png", "b-report.pdf", "c-Report-old.pdf", "d.txt"]


@pytest.mark.parametrize(
    "query",
    ["sort=owner", "order=up", "limit=x", "limit=99999999999", "cursor=%%%", "cursor=WzEsMl0"],
)
def test_bad_queries_are_400(filled: RunningServer, query: str) -> None:
    with filled.client() as client:
        response = client.get(f"/api/files?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_new_and_deleted_files_show_at_once(filled: RunningServer) -> None:
    with filled.client() as client:
        record = client.put("/api/files/fresh.txt", content=b"x").json()
        assert "fresh.txt" in names(client.get("/api/files"))
        assert client.delete(f"/api/files/{record['id']}").status_code == 204
        assert "fresh.txt" not in names(client.get("/api/files"))


class CountingStorage(LocalStorage):
    lists = 0
    stats = 0

    def list(self, *args: Any, **kwargs: Any) -> Any:
        CountingStorage.lists += 1
        return super().list(*args, **kwargs)

    def stat(self, *args: Any, **kwargs: Any) -> Any:
        CountingStorage.stats += 1
        return super().stat(*args, **kwargs)


async def test_pages_come_from_the_index_not_from_storage(tmp_path: Any) -> None:
    storage = CountingStorage(tmp_path)
    for i in range(30):
        storage.write(f"files/{i:032x}", b"x" * i, meta=ObjectMeta(filename=f"f{i}.bin"))
    index = FileIndex(RecordStore(storage), max_age=3600)
    page = await index.query(limit=7)
    pages = 1
    while page.next_cursor is not None:
        page = await index.query(limit=7, cursor=page.next_cursor)
        pages += 1
    assert pages == 5
    assert (CountingStorage.lists, CountingStorage.stats) == (1, 30)
    storage.write(f"files/{99:032x}", b"new", meta=ObjectMeta(filename="new.bin"))
    index.invalidate()
    page = await index.query(search="new")
    assert [r.filename for r in page.records] == ["new.bin"]
    # One more key listing, and only the new object described.
    assert (CountingStorage.lists, CountingStorage.stats) == (2, 31)


async def test_a_file_stored_during_a_refresh_is_not_hidden_by_it(tmp_path: Any) -> None:
    """A listing that began before a file was stored must not be trusted after it."""
    storage = LocalStorage(tmp_path)
    storage.write(f"files/{1:032x}", b"a", meta=ObjectMeta(filename="a.bin"))
    index = FileIndex(RecordStore(storage), max_age=3600)
    listing_started = asyncio.Event()
    go_on = asyncio.Event()
    real_alist = storage.alist

    async def slow_alist(*args: Any, **kwargs: Any) -> Any:
        page = await real_alist(*args, **kwargs)
        listing_started.set()
        await go_on.wait()
        return page

    storage.alist = slow_alist  # type: ignore[method-assign]
    first = asyncio.create_task(index.query())
    await listing_started.wait()
    storage.write(f"files/{2:032x}", b"b", meta=ObjectMeta(filename="b.bin"))
    index.invalidate()  # as the server does once the file is stored, before it answers
    go_on.set()
    assert [r.filename for r in (await first).records] == ["a.bin"]
    storage.alist = real_alist  # type: ignore[method-assign]
    later = await index.query()
    assert sorted(r.filename for r in later.records) == ["a.bin", "b.bin"]


class ManyFiles(LocalStorage):
    """10,000 file objects described from memory, counting the calls made to storage."""

    count = 10_000

    def __init__(self, root: Any) -> None:
        super().__init__(root)
        self.lists = 0
        self.stats = 0
        when = datetime(2026, 1, 1, tzinfo=UTC)
        self.objects = {
            f"files/{i:032x}": ObjectInfo(
                key=f"files/{i:032x}",
                size=i,
                created=when,
                filename=f"file-{i:05d}.bin",
                sha256="0" * 64,
            )
            for i in range(self.count)
        }

    def list(self, prefix: str = "", *, limit: int = 1000, token: str | None = None) -> ListPage:
        self.lists += 1
        keys = sorted(k for k in self.objects if k.startswith(prefix) and (not token or k > token))
        page = keys[:limit]
        more = len(keys) > limit
        return ListPage([self.objects[k] for k in page], page[-1] if more else None)

    def stat(self, key: str) -> ObjectInfo:
        self.stats += 1
        if key not in self.objects:
            raise ObjectNotFound(key)
        return self.objects[key]


async def test_ten_thousand_files_page_by_cursor_with_one_listing(tmp_path: Any) -> None:
    storage = ManyFiles(tmp_path)
    index = FileIndex(RecordStore(storage), max_age=3600)
    seen: list[str] = []
    page = await index.query(sort="size", descending=False, limit=1000)
    assert page.total == (10_000, sum(range(10_000)))
    while True:
        seen += [r.filename for r in page.records]
        if page.next_cursor is None:
            break
        page = await index.query(sort="size", descending=False, cursor=page.next_cursor)
    assert seen == [f"file-{i:05d}.bin" for i in range(10_000)]
    # One key listing (10 pages of 1,000 keys) and one stat per file, for all 10 pages.
    assert (storage.lists, storage.stats) == (10, 10_000)
    found = await index.query(search="file-0999", limit=50)
    assert [r.filename for r in found.records][:1] == ["file-09999.bin"]
    assert found.matched[0] == 10
    assert (storage.lists, storage.stats) == (10, 10_000)


class CountingS3(S3Storage):
    lists = 0
    stats = 0

    def list(self, *args: Any, **kwargs: Any) -> Any:
        CountingS3.lists += 1
        return super().list(*args, **kwargs)

    def stat(self, *args: Any, **kwargs: Any) -> Any:
        CountingS3.stats += 1
        return super().stat(*args, **kwargs)


@pytest.mark.s3
async def test_pages_on_s3_come_from_the_index(seaweed: Seaweed) -> None:
    client = seaweed.client()
    storage = CountingS3(seaweed.bucket, f"list-{uuid.uuid4().hex[:8]}", client=client)
    try:
        for i in range(12):
            storage.write(f"files/{i:032x}", b"x" * i, meta=ObjectMeta(filename=f"s3-{i:02d}.bin"))
        index = FileIndex(RecordStore(storage), max_age=3600)
        names: list[str] = []
        page = await index.query(sort="name", descending=False, limit=5)
        while True:
            names += [r.filename for r in page.records]
            if page.next_cursor is None:
                break
            page = await index.query(
                sort="name", descending=False, limit=5, cursor=page.next_cursor
            )
        assert names == [f"s3-{i:02d}.bin" for i in range(12)]
        assert (CountingS3.lists, CountingS3.stats) == (1, 12)
    finally:
        listing = client.list_objects_v2(Bucket=seaweed.bucket, Prefix=storage.prefix)
        for entry in listing.get("Contents", []):
            client.delete_object(Bucket=seaweed.bucket, Key=entry["Key"])


class TaggedLater(LocalStorage):
    """As S3: an object is seen for a moment before its sha256 tag is put."""

    untagged: ClassVar[set[str]] = set()

    def stat(self, key: str) -> ObjectInfo:
        info = super().stat(key)
        return dataclasses.replace(info, sha256=None) if key in self.untagged else info


async def test_a_record_seen_before_its_sha256_is_described_again(tmp_path: Any) -> None:
    storage = TaggedLater(tmp_path)
    old, new = f"files/{1:032x}", f"files/{2:032x}"
    storage.write(old, b"a", meta=ObjectMeta(filename="a.bin"))
    storage.write(new, b"b", meta=ObjectMeta(filename="b.bin"))
    # An object without a digest a minute after it was stored has none: left alone.
    os.utime(storage.root / old, (time.time() - 120, time.time() - 120))
    TaggedLater.untagged = {old, new}
    index = FileIndex(RecordStore(storage), max_age=0)
    assert {r.filename: r.sha256 for r in (await index.query()).records} == {
        "a.bin": "",
        "b.bin": "",
    }
    TaggedLater.untagged = set()
    digests = {r.filename: r.sha256 for r in (await index.query()).records}
    assert digests == {"a.bin": "", "b.bin": hashlib.sha256(b"b").hexdigest()}
