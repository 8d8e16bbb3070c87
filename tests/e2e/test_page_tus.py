"""The web page sends large files by tus: a 20 MiB upload, and one resumed after a reload.

Headless Chromium (Debian's) driven by Playwright against a real server; the server's
storage is watched to count the bytes each session really sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from spoolup.server.config import ServerConfig
from spoolup.server.store import RecordStore
from spoolup.storage import ObjectInfo, StorageError
from tests.server.conftest import RunningServer, start_server
from tests.tus.conftest import CountingStorage

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")

MiB = 1024 * 1024
SIZE = 20 * MiB + 12345


@dataclass
class Served:
    running: RunningServer
    storage: CountingStorage
    root: Path
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def uploads(self) -> list[str]:
        """Ids of the tus uploads the server has state for."""
        return sorted(p.parent.name for p in (self.root / "tus").glob("*/info"))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    (tmp_path / "tmp").mkdir()
    root = tmp_path / "storage"
    storage = CountingStorage(root)
    config = ServerConfig(storage=str(root))
    running = start_server(config, tmp_path / "tmp", store=RecordStore(storage))
    yield Served(running, storage, root)
    running.stop()


def big_file(folder: Path) -> Path:
    path = folder / "backup 2026.tar"
    path.write_bytes(os.urandom(SIZE))
    return path


def watch_requests(page: object, served: Served) -> list[str]:
    outside: list[str] = []

    def seen(request: object) -> None:
        url = request.url  # type: ignore[attr-defined]
        if url.startswith(served.running.url):
            headers = request.headers  # type: ignore[attr-defined]
            served.requests.append((request.method, url, headers))  # type: ignore[attr-defined]
        elif not url.startswith(("data:", "blob:")):
            outside.append(url)

    page.on("request", seen)  # type: ignore[attr-defined]
    return outside


def test_large_file_goes_by_tus(browser: object, served: Served, tmp_path: Path) -> None:
    path = big_file(tmp_path)
    page = browser.new_page()  # type: ignore[attr-defined]
    outside = watch_requests(page, served)
    page.goto(served.running.url)
    page.set_input_files("#file-input", str(path))
    item = page.locator(f'#queue .item[data-filename="{path.name}"]')
    sync_api.expect(item).to_have_attribute("data-transport", "tus")
    sync_api.expect(item).to_have_attribute("data-state", "done", timeout=60_000)
    sync_api.expect(item.locator(".bar")).to_have_attribute("aria-valuenow", "100")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sync_api.expect(item.locator(".item-stats")).to_contain_text(digest[:12])
    row = page.locator(f'#file-rows tr[data-filename="{path.name}"]')
    sync_api.expect(row.locator(".sha")).to_have_attribute("title", digest)

    patches = [r for r in served.requests if r[0] == "PATCH"]
    assert len(patches) == 3  # 8 MiB chunks
    assert all("/tus/" in url for _, url, _ in patches)
    assert not [r for r in served.requests if r[0] == "POST" and r[1].endswith("/api/files")]
    assert served.storage.part_bytes == SIZE
    with served.running.client() as client:
        (record,) = client.get("/api/files").json()
        assert record["sha256"] == digest
        assert client.get(f"/api/files/{record['id']}").content == path.read_bytes()
    assert outside == []
    assert page.evaluate("localStorage.length") == 0
    page.close()


def let_go(lock: Path) -> bool:
    """No server holds the upload's lease: no record, or a parked one."""
    try:
        return bool(json.loads(lock.read_bytes()).get("parked"))
    except FileNotFoundError:
        return True
    except ValueError:  # being rewritten in place
        return False


def test_reload_midway_then_the_same_file_resumes(
    browser: object, served: Served, tmp_path: Path
) -> None:
    path = big_file(tmp_path)
    page = browser.new_page()  # type: ignore[attr-defined]
    watch_requests(page, served)
    page.goto(served.running.url)
    cdp = page.context.new_cdp_session(page)
    conditions = {"offline": False, "latency": 0, "downloadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": 4_000_000})
    page.set_input_files("#file-input", str(path))
    page.wait_for_function(
        "() => Number(document.querySelector('#queue .item .bar')"
        ".getAttribute('aria-valuenow')) >= 50",
        timeout=30_000,
    )
    page.reload()
    cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": -1})

    # The page says what can be resumed.
    sync_api.expect(page.locator("#resume-hint")).to_contain_text(path.name)
    # Wait until the server has let go of the interrupted PATCH (its lease is gone, or
    # parked: a free record its server may take back).
    (upload_id,) = served.uploads()
    lock = served.root / ".tus-leases" / f"{upload_id}.lock"
    deadline = time.monotonic() + 15
    while not let_go(lock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert let_go(lock), lock.read_text()
    with served.running.client() as client:
        head = client.head(f"/tus/{upload_id}", headers={"Tus-Resumable": "1.0.0"})
    offset = int(head.headers["upload-offset"])
    assert 0 < offset < SIZE
    before = served.storage.part_bytes
    assert before == offset
    served.requests.clear()

    # Pick the same file again: it continues from the server's offset.
    page.set_input_files("#file-input", str(path))
    item = page.locator(f'#queue .item[data-filename="{path.name}"]')
    sync_api.expect(item).to_have_attribute("data-state", "done", timeout=60_000)
    sync_api.expect(item).to_have_attribute("data-resumed-from", str(offset))
    sync_api.expect(item.locator(".item-stats")).to_contain_text("resumed")
    sync_api.expect(page.locator("#resume-hint")).to_be_hidden()

    sent_now = served.storage.part_bytes - before
    assert sent_now == SIZE - offset < SIZE
    first_patch = next(h for method, _, h in served.requests if method == "PATCH")
    assert int(first_patch["upload-offset"]) == offset
    assert first_patch["upload-checksum"].startswith("sha256 ")  # as the Python client sends
    assert not [r for r in served.requests if r[0] == "POST"]  # no new upload created
    assert served.uploads() == [upload_id]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with served.running.client() as client:
        (record,) = client.get("/api/files").json()
    assert record["sha256"] == digest
    assert record["size"] == SIZE
    assert (served.root / "files" / record["id"]).read_bytes() == path.read_bytes()
    page.close()


def test_cancelled_tus_upload_is_terminated(
    browser: object, served: Served, tmp_path: Path
) -> None:
    path = big_file(tmp_path)
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(served.running.url)
    cdp = page.context.new_cdp_session(page)
    conditions = {"offline": False, "latency": 0, "downloadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": 2_000_000})
    page.set_input_files("#file-input", str(path))
    item = page.locator(f'#queue .item[data-filename="{path.name}"]')
    sync_api.expect(item.locator(".item-stats")).to_contain_text("left", timeout=10_000)
    item.locator(".cancel").click()
    sync_api.expect(item).to_have_attribute("data-state", "cancelled")
    deadline = time.monotonic() + 30
    while served.uploads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.uploads() == []
    assert page.evaluate("localStorage.length") == 0
    with served.running.client() as client:
        assert client.get("/api/files").json() == []
    # The termination waited for the aborted PATCH to end: no 423 in the console.
    assert not [e for e in errors if "423" in e], errors
    page.close()


class FailingOnce(CountingStorage):
    """The first move of a finished upload to files/ fails (a storage hiccup)."""

    failed = False

    def move(self, src: str, dest: str, **kw: Any) -> ObjectInfo:
        """Fail once, then move."""
        if not self.failed:
            self.failed = True
            raise StorageError("the disk went away")
        return super().move(src, dest, **kw)


def test_completion_failing_once_is_finished_by_the_page(browser: object, tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    root = tmp_path / "storage"
    storage = FailingOnce(root)
    running = start_server(
        ServerConfig(storage=str(root)), tmp_path / "tmp", store=RecordStore(storage)
    )
    try:
        path = tmp_path / "nine.bin"
        path.write_bytes(os.urandom(9 * MiB))
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(running.url)
        page.set_input_files("#file-input", str(path))
        item = page.locator('#queue .item[data-filename="nine.bin"]')
        sync_api.expect(item).to_have_attribute("data-state", "done", timeout=30_000)
        assert storage.failed
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with running.client() as client:
            (record,) = client.get("/api/files").json()
        assert record["sha256"] == digest
        sync_api.expect(item).to_have_attribute("data-id", record["id"])
        page.close()
    finally:
        running.stop()


def test_tus_upload_sends_the_token(browser: object, tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    root = tmp_path / "storage"
    config = ServerConfig(storage=str(root), token="tus-token")
    running = start_server(config, tmp_path / "tmp")
    try:
        served = Served(running, CountingStorage(tmp_path / "unused"), root)
        page = browser.new_page()  # type: ignore[attr-defined]
        watch_requests(page, served)
        page.goto(running.url)
        sync_api.expect(page.locator("#token-dialog")).to_be_visible()
        page.fill("#token-input", "tus-token")
        page.click("#token-form button[type=submit]")
        path = tmp_path / "nine.bin"
        path.write_bytes(os.urandom(9 * MiB))
        page.set_input_files("#file-input", str(path))
        item = page.locator('#queue .item[data-filename="nine.bin"]')
        sync_api.expect(item).to_have_attribute("data-transport", "tus")
        sync_api.expect(item).to_have_attribute("data-state", "done", timeout=30_000)
        tus = [h for _, url, h in served.requests if "/tus/" in url]
        assert len(tus) >= 3  # POST, PATCHes, HEAD
        assert all(h.get("authorization") == "Bearer tus-token" for h in tus)
        with running.client("tus-token") as client:
            (record,) = client.get("/api/files").json()
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        page.close()
    finally:
        running.stop()
