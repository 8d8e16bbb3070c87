"""A whole upload whose completion did not finish is finished by a HEAD or the sweep.

tuspy and tus-js-client, seeing the full offset, send no PATCH at it; the server that
took the last byte may have died (or failed) before handing the upload on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from benchmarks.serving import free_port
from spoolup.files import UploadedFile
from spoolup.storage import StorageError
from spoolup.tus.state import UploadInfo
from tests.tus.conftest import Env, Server
from tests.tus.test_app import create, patch


def failing_once(env: Env) -> Any:
    failures = [StorageError("the records went away")]

    def on_complete(file: UploadedFile, info: UploadInfo) -> dict[str, Any]:
        if failures:
            raise failures.pop()
        return env.completed(file, info)

    return on_complete


def left_unhanded(env: Env, client: httpx.Client, data: bytes) -> tuple[Server, str]:
    server = env.start(on_complete=failing_once(env))
    url = create(client, server, len(data))
    # On a connection of its own: the server closes it after the error.
    with httpx.Client(headers=client.headers) as once:
        assert patch(once, url, 0, data).status_code == 500
    assert env.completed.calls == []
    return server, url


def record_of(response: httpx.Response) -> dict[str, Any]:
    return json.loads(base64.b64decode(response.headers["spoolup-file-record"]))  # type: ignore[no-any-return]


def test_a_head_finishes_a_whole_upload_once(env: Env, client: httpx.Client) -> None:
    data = b"every byte arrived"
    _, url = left_unhanded(env, client, data)
    head = client.head(url)
    assert head.status_code == 200
    assert head.headers["upload-offset"] == str(len(data))
    record = record_of(head)
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert [c["data"] for c in env.completed.calls] == [data]
    # Once: the next HEAD names the same record.
    assert record_of(client.head(url)) == record
    assert len(env.completed.calls) == 1


def test_the_sweep_finishes_a_whole_upload(env: Env, client: httpx.Client) -> None:
    data = b"nobody asks again"
    server, url = left_unhanded(env, client, data)
    assert asyncio.run(server.app.sweep()) == []
    assert [c["data"] for c in env.completed.calls] == [data]
    assert record_of(client.head(url))["sha256"] == hashlib.sha256(data).hexdigest()
    asyncio.run(server.app.sweep())
    assert len(env.completed.calls) == 1


DIES_ON_COMPLETION = """
import os, signal, sys
import uvicorn
from spoolup.tus import create_tus_app

def die(file, info):
    os.kill(os.getpid(), signal.SIGKILL)  # every byte is in, nothing handed on yet

app = create_tus_app(sys.argv[1], on_complete=die, sweep_interval=None)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def test_a_head_finishes_the_upload_of_a_server_killed_before_completing_it(
    env: Env, client: httpx.Client
) -> None:
    """kill -9 after the last byte, before the record: another server's HEAD finishes it."""
    data = os.urandom(300_000)
    port = free_port()
    command = [sys.executable, "-c", DIES_ON_COMPLETION, str(env.root), str(port)]
    with subprocess.Popen(command) as doomed:
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_up(url)
            created = client.post(url, headers={"Upload-Length": str(len(data))})
            upload_id = created.headers["location"].rsplit("/", 1)[1]
            with pytest.raises(httpx.TransportError):  # the server died answering
                patch(client, url + upload_id, 0, data)
            assert doomed.wait(30) == -signal.SIGKILL
        finally:
            doomed.kill()
    server = env.start(clock=time.time)  # the dead server's lease runs out in real time
    deadline = time.monotonic() + 60
    while "spoolup-file-record" not in (head := client.head(server.url + upload_id)).headers:
        # The dead server's lease runs out first (3 s).
        assert head.headers["upload-offset"] == str(len(data))
        assert time.monotonic() < deadline, "no HEAD finished the upload"
        time.sleep(0.1)
    assert record_of(head)["sha256"] == hashlib.sha256(data).hexdigest()
    assert [c["data"] for c in env.completed.calls] == [data]


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.options(url, timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        else:
            return


DIES_COMPLETING = """
import os, signal, sys
import uvicorn
from spoolup.storage.local import LocalStorage
from spoolup.tus import create_tus_app

class Dies(LocalStorage):
    def complete_multipart(self, *args, **kwargs):
        super().complete_multipart(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # renamed into place; no state says so

app = create_tus_app(Dies(sys.argv[1]), sweep_interval=None)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


@pytest.mark.slow
def test_a_head_finishes_the_upload_of_a_server_killed_while_completing_it(
    env: Env, client: httpx.Client
) -> None:
    """kill -9 once the data file is renamed into place, before the state says so."""
    data = os.urandom(300_000)
    port = free_port()
    command = [sys.executable, "-c", DIES_COMPLETING, str(env.root), str(port)]
    with subprocess.Popen(command) as doomed:
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_up(url)
            created = client.post(url, headers={"Upload-Length": str(len(data))})
            upload_id = created.headers["location"].rsplit("/", 1)[1]
            with pytest.raises(httpx.TransportError):
                patch(client, url + upload_id, 0, data)
            assert doomed.wait(30) == -signal.SIGKILL
        finally:
            doomed.kill()
    server = env.start(clock=time.time)
    deadline = time.monotonic() + 60
    while "spoolup-file-record" not in (head := client.head(server.url + upload_id)).headers:
        assert head.headers["upload-offset"] == str(len(data))
        assert time.monotonic() < deadline, "no HEAD finished the upload"
        time.sleep(0.1)
    assert record_of(head)["sha256"] == hashlib.sha256(data).hexdigest()
    assert [c["data"] for c in env.completed.calls] == [data]
