"""The web page in headless Chromium (Debian's), driven by Playwright, against a real server."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from spoolup.limits import Limits
from spoolup.server.config import ServerConfig
from tests.server.conftest import RunningServer, start_server

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    running = start_server(ServerConfig(storage=str(tmp_path / "storage")), tmpdir)
    yield running
    running.stop()


def sample_files(folder: Path) -> list[Path]:
    folder.mkdir()
    files = []
    for name, size in [
        ("notes.txt", 3_000),
        ("photo-raw.bin", 3_500_000),
        ("report 2026.pdf", 800_000),
    ]:
        path = folder / name
        path.write_bytes(os.urandom(size))
        files.append(path)
    return files


def test_upload_list_download_delete_inspect(
    browser: object, server: RunningServer, tmp_path: Path
) -> None:
    files = sample_files(tmp_path / "upload")
    page = browser.new_page(viewport={"width": 1180, "height": 900}, device_scale_factor=1)  # type: ignore[attr-defined]
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            None if r.url.startswith((server.url, "data:", "blob:")) else outside.append(r.url)
        ),
    )
    page.goto(server.url)
    sync_api.expect(page.locator("#status")).to_have_class("status ok")

    # Upload three files through the file input; watch each bar reach 100 %.
    page.set_input_files("#file-input", [str(p) for p in files])
    items = page.locator("#queue .item")
    sync_api.expect(items).to_have_count(3)
    for path in files:
        item = page.locator(f'#queue .item[data-filename="{path.name}"]')
        sync_api.expect(item).to_have_attribute("data-state", "done", timeout=30_000)
        sync_api.expect(item.locator(".bar")).to_have_attribute("aria-valuenow", "100")

    # Listed, with their sha256.
    rows = page.locator("#file-rows tr")
    sync_api.expect(rows).to_have_count(3)
    for path in files:
        row = page.locator(f'#file-rows tr[data-filename="{path.name}"]')
        sync_api.expect(row.locator(".sha")).to_have_attribute(
            "title", hashlib.sha256(path.read_bytes()).hexdigest()
        )

    # Download one and compare the bytes.
    target = files[2]
    with page.expect_download() as info:
        page.locator(f'#file-rows tr[data-filename="{target.name}"] .download').click()
    download = info.value
    assert download.suggested_filename == target.name
    assert Path(download.path()).read_bytes() == target.read_bytes()

    # Delete one (two clicks: the second confirms).
    doomed = page.locator(f'#file-rows tr[data-filename="{files[0].name}"] .delete')
    doomed.click()
    sync_api.expect(doomed).to_have_text("Delete?")
    doomed.click()
    sync_api.expect(rows).to_have_count(2)
    with server.client() as client:
        names = sorted(r["filename"] for r in client.get("/api/files").json())
    assert names == sorted(p.name for p in files[1:])

    # Check a white image.
    white = tmp_path / "white.png"
    Image.new("RGB", (640, 480), "white").save(white)
    page.set_input_files("#image-input", str(white))
    result = page.locator("#inspect-result")
    sync_api.expect(result).to_be_visible()
    sync_api.expect(result).to_have_attribute("data-all-white", "true")
    sync_api.expect(page.locator("#inspect-dims")).to_contain_text("640 \u00d7 480")
    sync_api.expect(page.locator("#inspect-format")).to_have_text("PNG")

    # And a not-an-image: the server's own message is shown.
    page.set_input_files("#image-input", str(files[0]))
    sync_api.expect(page.locator("#inspect-error")).to_contain_text("not an image")

    # A white image again: the error goes away.
    page.set_input_files("#image-input", str(white))
    sync_api.expect(page.locator("#inspect-error")).to_be_hidden()
    sync_api.expect(result).to_be_visible()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
    assert outside == [], f"the page fetched from outside: {outside}"
    page.close()


def test_token_is_asked_once_and_kept(browser: object, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    running = start_server(ServerConfig(storage=str(tmp_path / "storage"), token="tok-123"), tmpdir)
    try:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(running.url)
        dialog = page.locator("#token-dialog")
        sync_api.expect(dialog).to_be_visible()
        page.fill("#token-input", "wrong")
        page.click("#token-form button[type=submit]")
        sync_api.expect(page.locator("#token-error")).to_be_visible()  # asked again, with a note
        page.fill("#token-input", "tok-123")
        page.click("#token-form button[type=submit]")
        sync_api.expect(dialog).to_be_hidden()
        # The dialog's close event (which keeps the token) comes in a task of its own,
        # after the dialog is hidden: wait for it rather than read at once.
        page.wait_for_function("sessionStorage.getItem('spoolup.token') === 'tok-123'")

        upload = tmp_path / "a.txt"
        upload.write_bytes(b"hello token")
        page.set_input_files("#file-input", str(upload))
        item = page.locator('#queue .item[data-filename="a.txt"]')
        sync_api.expect(item).to_have_attribute("data-state", "done", timeout=15_000)
        sync_api.expect(page.locator("#file-rows tr")).to_have_count(1)
        with page.expect_download() as info:
            page.locator("#file-rows .download").click()
        assert Path(info.value.path()).read_bytes() == b"hello token"
        page.reload()
        sync_api.expect(page.locator("#file-rows tr")).to_have_count(1)
        time.sleep(0.2)
        assert not dialog.is_visible()  # not asked again in the same tab
        page.close()
    finally:
        running.stop()


def test_errors_and_cancel(browser: object, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    config = ServerConfig(storage=str(tmp_path / "storage"), limits=Limits(max_file_size=1_000_000))
    running = start_server(config, tmpdir)
    try:
        page = browser.new_page()  # type: ignore[attr-defined]
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.method) if r.method != "GET" else None)
        page.goto(running.url)
        sync_api.expect(page.locator("#files-empty")).to_be_visible()
        sync_api.expect(page.locator("#limits-line")).to_contain_text("Files up to 1 MB each")

        # A file over the limit: said in plain words, before a byte is sent.
        big = tmp_path / "too-big.bin"
        big.write_bytes(os.urandom(1_500_000))
        page.set_input_files("#file-input", str(big))
        item = page.locator('#queue .item[data-filename="too-big.bin"]')
        sync_api.expect(item).to_have_attribute("data-state", "failed", timeout=15_000)
        sync_api.expect(item.locator(".item-stats")).to_have_text(
            "too-big.bin is 1.5 MB; this server takes files up to 1 MB."
        )
        assert sent == []
        sync_api.expect(item.locator(".retry")).to_be_hidden()  # retrying cannot help

        # A slow upload, cancelled midway: nothing is stored, nothing left behind.
        cdp = page.context.new_cdp_session(page)
        conditions = {"offline": False, "latency": 0, "downloadThroughput": -1}
        cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": 200_000})
        slow = tmp_path / "slow.bin"
        slow.write_bytes(os.urandom(900_000))
        page.set_input_files("#file-input", str(slow))
        item = page.locator('#queue .item[data-filename="slow.bin"]')
        sync_api.expect(item).to_have_attribute("data-state", "uploading")
        sync_api.expect(item.locator(".item-stats")).to_contain_text("left", timeout=10_000)
        item.locator(".cancel").click()
        sync_api.expect(item).to_have_attribute("data-state", "cancelled")
        # The throttle stays on: lifted now, Chromium may still let the aborted body go.
        page.locator("#refresh").click()
        sync_api.expect(page.locator("#files-empty")).to_be_visible()
        deadline = time.monotonic() + 30
        while running.temp_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.temp_files() == []
        with running.client() as client:
            assert client.get("/api/files").json() == []
        page.close()
    finally:
        running.stop()
    assert not [p for p in (tmp_path / "storage").rglob("*") if p.is_file()]
