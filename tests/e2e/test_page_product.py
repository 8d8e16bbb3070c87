"""The page as a product: phone and desktop layouts, dark mode, every action, retry,
share links and upload links, paging, forgetting an unfinished upload.

Headless Chromium (Debian's) driven by Playwright against a real server on 127.0.0.1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spoolup.limits import Limits
from spoolup.server.config import ServerConfig
from tests.e2e.test_page import ARTIFACTS
from tests.server.conftest import RunningServer, start_server

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
TOKEN = "page-token"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def make(**settings: Any) -> RunningServer:
        tmpdir = tmp_path / f"tmp{len(servers)}"
        tmpdir.mkdir()
        settings.setdefault("storage", str(tmp_path / f"storage{len(servers)}"))
        running = start_server(ServerConfig(**settings), tmpdir)
        servers.append(running)
        return running

    yield make
    for running in servers:
        running.stop()


def with_token(page: Any) -> None:
    """Enter the token in the dialog the page opens."""
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-dialog")).to_be_hidden()


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    client = page.evaluate("document.documentElement.clientWidth")
    assert width <= client, f"the page scrolls sideways: {width} > {client}"


def on_screen(page: Any, locator: Any) -> None:
    """The element is visible and wholly inside the viewport's width."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    viewport = page.viewport_size
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= viewport["width"] + 0.5, locator


@pytest.mark.parametrize(
    ("viewport", "scheme"), [(PHONE, "dark"), (DESKTOP, "light")], ids=["phone-dark", "desktop"]
)
def test_every_action_on_phone_and_desktop(
    browser: Any,
    serve: Callable[..., RunningServer],
    tmp_path: Path,
    viewport: dict[str, int],
    scheme: str,
) -> None:
    server = serve()
    with server.client() as client:
        for i in range(53):  # more than one page (50) of the list
            client.put(f"/api/files/old-{i:02d}.log", content=b"x" * (i + 1))
    context = browser.new_context(
        viewport=viewport,
        color_scheme=scheme,
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    page.goto(server.url)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(20, 24, 30)" if scheme == "dark" else "rgb(245, 246, 248)")
    expect(page.locator("#limits-line")).to_contain_text("Files up to 10.7 GB each")
    expect(page.locator("#files-total")).to_have_text("53 files · 1.43 kB in all · showing 50")
    expect(page.locator("#file-rows tr")).to_have_count(50)
    page.click("#files-more")
    expect(page.locator("#file-rows tr")).to_have_count(53)
    expect(page.locator("#files-more")).to_be_hidden()

    upload = tmp_path / "a rather long file name for a small phone screen, 2026.pdf"
    upload.write_bytes(os.urandom(30_000))
    page.set_input_files("#file-input", str(upload))
    item = page.locator("#queue .item").first
    expect(item).to_have_attribute("data-state", "done", timeout=15_000)
    row = page.locator(f'#file-rows tr[data-filename="{upload.name}"]')
    expect(row).to_have_count(1)
    no_sideways_scroll(page)
    for name in ["download", "copy-link", "copy-curl", "delete", "copy-sha"]:
        on_screen(page, row.locator(f".{name}"))
    for control in ["#files-search", "#files-sort", "#refresh", "#clear-finished"]:
        on_screen(page, page.locator(control))

    # Copy the full sha256, a download link and a curl line.
    with server.client() as client:
        listed = client.get("/api/files", params={"q": "rather"}).json()
    (record,) = listed
    row.locator(".copy-sha").click()
    expect(page.locator("#toast")).to_have_text("Copied the sha256.")
    assert page.evaluate("navigator.clipboard.readText()") == record["sha256"]
    row.locator(".copy-link").click()
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == f"{server.url}/api/files/{record['id']}"
    row.locator(".copy-curl").click()
    expect(page.locator("#toast")).to_have_text("Copied a curl command.")
    assert page.evaluate("navigator.clipboard.readText()") == (
        f"curl -fL -o '{upload.name}' '{link}'"
    )
    with page.expect_download() as info:
        row.locator(".download").click()
    assert Path(info.value.path()).read_bytes() == upload.read_bytes()

    # Search and sort.
    page.fill("#files-search", "RATHER long")
    expect(page.locator("#file-rows tr")).to_have_count(1)
    expect(page.locator("#files-total")).to_contain_text("1 of 54 match")
    page.fill("#files-search", "old-")
    page.select_option("#files-sort", "size:desc")
    expect(page.locator("#file-rows tr").first).to_have_attribute("data-filename", "old-52.log")
    page.select_option("#files-sort", "name:asc")
    expect(page.locator("#file-rows tr").first).to_have_attribute("data-filename", "old-00.log")
    page.fill("#files-search", "")

    # Clear finished, delete.
    page.click("#clear-finished")
    expect(page.locator("#queue .item")).to_have_count(0)
    row.locator(".delete").click()
    row.locator(".delete").click()
    expect(row).to_have_count(0)
    no_sideways_scroll(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{viewport['width']}.png"), full_page=True)
    context.close()


def test_limits_are_plain_and_checked_before_sending(
    browser: Any, serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = serve(limits=Limits(max_file_size=3_000_000), inspect_max_size=1_000_000)
    page = browser.new_page(viewport=PHONE)
    writes: list[str] = []
    page.on("request", lambda r: writes.append(r.url) if r.method not in {"GET", "HEAD"} else None)
    page.goto(server.url)
    expect(page.locator("#limits-line")).to_contain_text("Files up to 3 MB each")
    expect(page.locator("#inspect-limit")).to_contain_text("Images up to 1 MB")
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG" + os.urandom(5_100_000))
    page.set_input_files("#file-input", str(photo))
    item = page.locator('#queue .item[data-filename="photo.png"]')
    expect(item).to_have_attribute("data-state", "failed")
    expect(item.locator(".item-stats")).to_have_text(
        "photo.png is 5.1 MB; this server takes files up to 3 MB."
    )
    page.set_input_files("#image-input", str(photo))
    expect(page.locator("#inspect-error")).to_have_text(
        "photo.png is 5.1 MB; this server takes files up to 1 MB."
    )
    assert writes == []  # not one byte of either was sent
    page.close()


def test_retry_after_a_dropped_connection(
    browser: Any, serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = serve()
    page = browser.new_page(viewport=DESKTOP)
    page.goto(server.url)
    dropped: list[str] = []

    def drop(route: Any) -> None:
        if route.request.method == "POST" and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/files", drop)
    path = tmp_path / "notes.txt"
    path.write_bytes(b"notes " * 1000)
    page.set_input_files("#file-input", str(path))
    item = page.locator('#queue .item[data-filename="notes.txt"]')
    expect(item).to_have_attribute("data-state", "failed", timeout=15_000)
    expect(item.locator(".item-stats")).to_contain_text("The connection to the server was lost")
    assert dropped
    item.locator(".retry").click()
    expect(item).to_have_attribute("data-state", "done", timeout=15_000)
    expect(page.locator('#file-rows tr[data-filename="notes.txt"]')).to_have_count(1)
    page.close()


def test_share_link_downloads_in_a_fresh_context_until_it_expires(
    browser: Any, serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = serve(token=TOKEN, share_ttl=8)  # a loaded machine's browser is slow
    with server.client(TOKEN) as client:
        client.put("/api/files/report.pdf", content=b"%PDF shared bytes")
    owner = browser.new_context(viewport=PHONE, permissions=["clipboard-read", "clipboard-write"])
    page = owner.new_page()
    page.goto(server.url)
    with_token(page)
    row = page.locator('#file-rows tr[data-filename="report.pdf"]')
    row.locator(".copy-link").click()
    expect(page.locator("#toast")).to_contain_text("Copied a share link (valid until")
    link = page.evaluate("navigator.clipboard.readText()")
    assert "/s/" in link
    owner.close()

    stranger = browser.new_context(accept_downloads=True)  # no token, no storage
    page = stranger.new_page()
    page.set_content(f'<a id="get" href="{link}">get</a>')
    with page.expect_download() as info:
        page.click("#get")
    assert Path(info.value.path()).read_bytes() == b"%PDF shared bytes"
    assert info.value.suggested_filename == "report.pdf"
    deadline = time.monotonic() + 30
    while (late := stranger.request.get(link)).status == 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert late.status == 410
    assert "expired" in late.json()["error"]
    stranger.close()


def test_upload_link_uploads_and_lists_nothing(
    browser: Any, serve: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = serve(token=TOKEN)
    owner = browser.new_context(viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    page = owner.new_page()
    page.goto(server.url)
    with_token(page)
    expect(page.locator("#request-card")).to_be_visible()
    page.fill("#request-files", "2")
    page.fill("#request-size", "0.05")
    page.click("#request-form button[type=submit]")
    expect(page.locator("#request-error")).to_be_hidden()
    expect(page.locator("#request-note")).to_contain_text("Up to 2 files of 50 kB each")
    page.click("#request-copy")
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == page.input_value("#request-url")
    owner.close()

    guest = browser.new_context(viewport=PHONE)
    page = guest.new_page()
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.goto(link)
    expect(page.locator("#limits-line")).to_contain_text(
        "You can send 2 more files, up to 50 kB each"
    )
    expect(page.locator("#files-card")).to_have_count(0)
    expect(page.locator("#inspect-card")).to_have_count(0)
    expect(page.locator("#token-dialog")).to_be_hidden()
    no_sideways_scroll(page)
    small, big = tmp_path / "scan.pdf", tmp_path / "video.mp4"
    small.write_bytes(os.urandom(20_000))
    big.write_bytes(os.urandom(60_000))
    page.set_input_files("#file-input", [str(small), str(big)])
    expect(page.locator('#queue .item[data-filename="scan.pdf"]')).to_have_attribute(
        "data-state", "done", timeout=15_000
    )
    expect(page.locator('#queue .item[data-filename="video.mp4"] .item-stats')).to_have_text(
        "video.mp4 is 60 kB; this server takes files up to 50 kB."
    )
    expect(page.locator("#limits-line")).to_contain_text("You can send 1 more file,")
    assert not [u for u in seen if "/api/" in u or "/tus/" in u], seen
    guest.close()
    with server.client(TOKEN) as client:
        assert [r["filename"] for r in client.get("/api/files").json()] == ["scan.pdf"]


def test_an_unfinished_upload_can_be_forgotten(
    browser: Any, serve: Callable[..., RunningServer]
) -> None:
    server = serve()
    with server.client() as client:
        made = client.post(
            "/tus/",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": "20000000"},
        )
        assert made.status_code == 201
        url = made.headers["location"]
        url = url if url.startswith("http") else f"{server.url}{url}"
    page = browser.new_page(viewport=PHONE)
    page.goto(server.url)
    key = "spoolup-tus:/tus/:big backup.tar:20000000:1700000000000"
    page.evaluate("([k, v]) => localStorage.setItem(k, v)", [key, url])
    page.reload()
    hint = page.locator("#resume-hint")
    expect(hint).to_contain_text("big backup.tar (20 MB)")
    # The hint sits below the drop zone, not over it.
    drop, box = page.locator("#dropzone").bounding_box(), hint.bounding_box()
    assert drop is not None
    assert box is not None
    assert box["y"] >= drop["y"] + drop["height"]
    page.locator("#resume-list .forget").click()
    expect(hint).to_be_hidden()
    assert page.evaluate("(k) => localStorage.getItem(k)", key) is None
    deadline = time.monotonic() + 30
    with server.client() as client:
        while client.head(url, headers={"Tus-Resumable": "1.0.0"}).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    page.close()
