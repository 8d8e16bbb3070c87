"""static/tus.js in headless Chromium: an upload, an abort, and a resume after a reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import spoolup.server
from tests.browser import chromium as launch_chromium
from tests.tus.conftest import Env, Server

pytestmark = pytest.mark.browser

STATIC = Path(spoolup.server.__file__).parent / "static"
SIZE = 3 * 1024 * 1024 + 17
PAGE = """<!doctype html><meta charset=utf-8><script src="/static/tus.js"></script>
<script>
  function makeFile() {
    const bytes = new Uint8Array(SIZE);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i % 251;
    return new File([bytes], "big file.bin", {type: "application/x-test", lastModified: 42});
  }
</script>""".replace("SIZE", str(SIZE))


async def page(request: object) -> HTMLResponse:
    return HTMLResponse(PAGE)


@pytest.fixture
def browser_server(env: Env) -> Server:
    routes = [Route("/", page), Mount("/static", StaticFiles(directory=STATIC))]
    return env.start(routes=routes)


@pytest.fixture
def chromium() -> Iterator[object]:
    with launch_chromium() as browser:
        yield browser


def expected() -> bytes:
    return bytes(i % 251 for i in range(SIZE))


def test_upload_abort_reload_resume(env: Env, browser_server: Server, chromium: object) -> None:
    from playwright.sync_api import Browser

    assert isinstance(chromium, Browser)
    context = chromium.new_context()
    tab = context.new_page()
    tab.goto(browser_server.base + "/")
    # First visit: send until 1 MiB is through, then abort (the tab is "closed").
    sent = tab.evaluate(
        """() => new Promise((resolve) => {
          let h;
          h = SpoolupTus.upload(makeFile(), {
            chunkSize: 512 * 1024,
            onProgress(sent) { if (sent >= 1024 * 1024) { h.abort(); resolve(sent); } },
          });
        })"""
    )
    assert sent >= 1024 * 1024
    assert env.completed.calls == []
    # After a reload, the same file resumes from the server's offset.
    tab.reload()
    result = tab.evaluate(
        """async () => {
          const seen = [];
          const h = SpoolupTus.upload(makeFile(), {
            chunkSize: 1024 * 1024, onProgress: (sent) => seen.push(sent),
          });
          const done = await h.done;
          return {first: seen[0], last: seen[seen.length - 1], fileId: done.fileId,
                  left: Object.keys(localStorage).length};
        }"""
    )
    assert result["first"] >= 1024 * 1024 - 512 * 1024
    assert result["last"] == SIZE
    assert result["left"] == 0
    (call,) = env.completed.calls
    assert result["fileId"] == call["id"]
    assert call["filename"] == "big file.bin"
    assert call["content_type"] == "application/x-test"
    assert call["data"] == expected()
    context.close()


def test_refused_upload_reports_error(env: Env, chromium: object) -> None:
    from playwright.sync_api import Browser

    assert isinstance(chromium, Browser)
    routes = [Route("/", page), Mount("/static", StaticFiles(directory=STATIC))]
    server = env.start(routes=routes, max_size=1000)
    tab = chromium.new_page()
    tab.goto(server.base + "/")
    error = tab.evaluate(
        """() => SpoolupTus.upload(makeFile(), {}).done.then(
             () => null, (e) => ({status: e.status, message: e.message}))"""
    )
    assert error["status"] == 413
    assert "max_size" in error["message"]
