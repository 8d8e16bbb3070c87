"""Take the README's screenshots from the real page: ``python -m tests.e2e.readme_screenshot``.

Starts a server on 127.0.0.1 with a few stored files, throttles Chromium's upload
bandwidth so that uploads are caught mid-way, checks a white image, and saves the page
at a desktop width (``docs/screenshot.png``, light) and a phone width
(``docs/screenshot-phone.png``, dark). Not a test: the browser tests (test_page*.py)
check the behaviour.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import expect

from spoolup.server.config import ServerConfig
from tests.browser import chromium
from tests.server.conftest import start_server

DOCS = Path(__file__).resolve().parents[2] / "docs"
STORED = [
    ("quarterly-report.pdf", 1_845_112),
    ("team-photo.jpg", 4_318_204),
    ("notes.md", 12_480),
    ("site-plan-v3.dwg", 9_204_551),
]
UPLOADS = [
    ("backup-2026-11.tar.gz", 60_000_000),
    ("site-survey.mp4", 40_000_000),
    ("invoice-0042.pdf", 380_000),
]


def _shoot(browser: Any, url: str, work: Path, *, phone: bool) -> Path:
    viewport = {"width": 390, "height": 1500} if phone else {"width": 1280, "height": 1040}
    context = browser.new_context(
        viewport=viewport, color_scheme="dark" if phone else "light", device_scale_factor=1
    )
    page = context.new_page()
    page.goto(url)
    expect(page.locator("#file-rows tr")).to_have_count(len(STORED))
    if not phone:
        white = work / "scan-page-3.png"
        Image.new("RGB", (1240, 1754), "white").save(white)
        page.set_input_files("#image-input", str(white))
        expect(page.locator("#inspect-result")).to_be_visible()
    cdp = context.new_cdp_session(page)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 6_000_000},
    )
    chosen = UPLOADS if not phone else UPLOADS[1:]
    page.set_input_files("#file-input", [str(work / name) for name, _ in chosen])
    expect(page.locator('#queue .item[data-state="done"]')).to_have_count(1, timeout=30_000)
    time.sleep(2.5)
    page.mouse.move(0, 0)
    out = DOCS / ("screenshot-phone.png" if phone else "screenshot.png")
    page.screenshot(path=str(out), full_page=phone)
    # Stop the uploads still running before the next scene.
    context.close()
    return out


def main() -> int:
    """Build the scene (a fresh server for each) and write both screenshots."""
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        for name, size in UPLOADS:
            (work / name).write_bytes(os.urandom(size))
        with chromium() as browser:
            for phone in (False, True):
                scene = work / ("phone" if phone else "desktop")
                (scene / "tmp").mkdir(parents=True)
                server = start_server(ServerConfig(storage=str(scene / "storage")), scene / "tmp")
                try:
                    with server.client() as client:
                        for name, size in STORED:
                            client.put(f"/api/files/{name}", content=os.urandom(size))
                            time.sleep(0.05)
                    out = _shoot(browser, server.url, work, phone=phone)
                finally:
                    server.stop()
                sys.stdout.write(f"written to {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
