"""Take docs/screenshot.png from the real page: ``python -m tests.e2e.readme_screenshot``.

Starts a server on 127.0.0.1 with a few stored files, throttles Chromium's upload
bandwidth so that three uploads are caught mid-way, checks a white image, and saves
the page. Not a test: the browser test (test_page.py) checks the behaviour.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

from spoolup.server.config import ServerConfig
from tests.e2e.test_page import CHROMIUM, LAUNCH_ARGS
from tests.server.conftest import start_server

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"


def main() -> int:
    """Build the scene and write the screenshot."""
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        tmpdir = work / "tmp"
        tmpdir.mkdir()
        server = start_server(ServerConfig(storage=str(work / "storage")), tmpdir)
        try:
            with server.client() as client:
                for name, size in [
                    ("quarterly-report.pdf", 1_845_112),
                    ("team-photo.jpg", 4_318_204),
                    ("notes.md", 12_480),
                ]:
                    client.put(f"/api/files/{name}", content=os.urandom(size))
                    time.sleep(0.05)
            uploads = []
            for name, size in [
                ("backup-2026-11.tar.gz", 60_000_000),
                ("site-survey.mp4", 40_000_000),
                ("invoice-0042.pdf", 380_000),
            ]:
                path = work / name
                path.write_bytes(os.urandom(size))
                uploads.append(str(path))
            white = work / "scan-page-3.png"
            Image.new("RGB", (1240, 1754), "white").save(white)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                page = browser.new_page(viewport={"width": 1180, "height": 1000})
                page.goto(server.url)
                expect(page.locator("#file-rows tr")).to_have_count(3)
                page.set_input_files("#image-input", str(white))
                expect(page.locator("#inspect-result")).to_be_visible()
                cdp = page.context.new_cdp_session(page)
                cdp.send(
                    "Network.emulateNetworkConditions",
                    {
                        "offline": False,
                        "latency": 0,
                        "downloadThroughput": -1,
                        "uploadThroughput": 6_000_000,
                    },
                )
                page.set_input_files("#file-input", uploads)
                expect(page.locator('#queue .item[data-state="done"]')).to_have_count(
                    1, timeout=30_000
                )
                time.sleep(2.5)
                page.mouse.move(0, 0)
                page.screenshot(path=str(OUT))
                browser.close()
        finally:
            server.stop()
    sys.stdout.write(f"written to {OUT}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
