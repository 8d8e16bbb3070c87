"""tus-js-client (npm, under Node) against the server: a whole upload, and one resumed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tus.conftest import Env, Server

JS = Path(__file__).parent / "js"
DATA = bytes(range(256)) * 2048  # 512 KiB: eight 64 KiB chunks


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    assert path is not None, "Node 20 is needed for the tus-js-client tests"
    if not (JS / "node_modules" / "tus-js-client").is_dir():
        npm = shutil.which("npm")
        assert npm is not None
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return path


def run_js(node: str, server: Server, file: Path, mode: str) -> dict[str, object]:
    done = subprocess.run(
        [node, str(JS / "upload.mjs"), server.url, str(file), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_tus_js_client_whole(node: str, env: Env, server: Server, tmp_path: Path) -> None:
    file = tmp_path / "photo.bin"
    file.write_bytes(DATA)
    result = run_js(node, server, file, "whole")
    assert str(result["url"]).startswith(server.base + "/tus/")
    (call,) = env.completed.calls
    assert (call["data"], call["filename"]) == (DATA, "photo.bin")


def test_tus_js_client_resumes(node: str, env: Env, server: Server, tmp_path: Path) -> None:
    file = tmp_path / "video.bin"
    file.write_bytes(DATA)
    result = run_js(node, server, file, "resume")
    aborted = result["abortedAt"]
    resumed = result["resumedFrom"]
    assert isinstance(aborted, int)
    assert isinstance(resumed, int)
    # The second run started where the server had got to, not from zero.
    assert resumed >= len(DATA) // 2
    (call,) = env.completed.calls
    assert call["data"] == DATA
