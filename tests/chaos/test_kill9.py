"""`kill -9` mid-POST, mid-PUT and mid-PATCH, then a restart: nothing partial, nothing left."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import httpx
import pytest

from benchmarks.serving import free_port
from tests.chaos.conftest import TUS, MiB, SlowSend, leftovers, payload
from tests.seaweed import Seaweed
from tests.serve_process import serve

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "chaosboundary7MA4YWxkTrZu0gW"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def _patch_headers(offset: int) -> dict[str, str]:
    return {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }


def test_kill9_mid_post_and_mid_put_leaves_nothing(tmp_path: Path) -> None:
    port = free_port()
    data = payload(12 * MiB)
    body, content_type = _multipart(data)
    with serve(tmp_path, port=port) as running:
        kept = httpx.put(f"{running.url}/api/files/kept.txt", content=b"kept").json()
        post = SlowSend("POST", f"{running.url}/api/files", body, {"Content-Type": content_type})
        put = SlowSend("PUT", f"{running.url}/api/files/big.bin", data)
        post.start()
        put.start()
        post.wait_sent(4 * MiB)
        put.wait_sent(4 * MiB)
        assert leftovers(tmp_path / "data"), "the uploads were not being written"
        running.kill9()
        post.join()
        put.join()
    with serve(tmp_path, port=port) as restarted:
        listed = httpx.get(f"{restarted.url}/api/files").json()
        assert [r["id"] for r in listed] == [kept["id"]]  # nothing partial is listed
        # The dead server's temp files went at start, however young.
        assert leftovers(tmp_path / "data") == []


def test_kill9_mid_patch_then_resume_to_the_right_sha256(tmp_path: Path) -> None:
    port = free_port()
    data = payload(20 * MiB, seed=2)
    with serve(tmp_path, port=port) as running:
        created = httpx.post(
            f"{running.url}/tus/", headers={**TUS, "Upload-Length": str(len(data))}
        )
        assert created.status_code == 201
        location = created.headers["location"]
        url = location if location.startswith("http") else running.url + location
        headers = _patch_headers(0)
        # About 4 s of sending: at least one timed checkpoint (every 2 s) happens.
        patch = SlowSend("PATCH", url, data[: 16 * MiB], headers, pause=0.06).start()
        patch.wait_sent(14 * MiB)
        running.kill9()
        patch.join()
    with serve(tmp_path, port=port) as restarted:
        url = url.replace(running.url, restarted.url)
        head = httpx.head(url, headers=TUS)
        assert head.status_code == 200
        offset = int(head.headers["upload-offset"])
        assert 0 < offset <= 14 * MiB  # a crash loses at most what came after a checkpoint
        assert httpx.get(f"{restarted.url}/api/files").json() == []
        # The dead server's write lease runs out (30 s): a tus client retries a 423.
        deadline = time.monotonic() + 90
        while True:
            rest = httpx.patch(
                url, content=data[offset:], headers=_patch_headers(offset), timeout=60
            )
            if rest.status_code != 423 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert rest.status_code == 204, rest.text
        records = httpx.get(f"{restarted.url}/api/files").json()
        assert len(records) == 1
        assert records[0]["sha256"] == hashlib.sha256(data).hexdigest()
        assert records[0]["size"] == len(data)
        assert leftovers(tmp_path / "data") == []


def test_a_running_server_sweeps_a_dead_neighbours_files_but_not_its_own(tmp_path: Path) -> None:
    storage = str(tmp_path / "shared")
    data = payload(12 * MiB, seed=6)
    with (
        serve(tmp_path / "a", storage=storage) as doomed,
        serve(tmp_path / "b", "--sweep-interval", "1", storage=storage) as survivor,
    ):
        # About 7 s of sending: sweeps run (every second) while it is written.
        mine = SlowSend("PUT", f"{survivor.url}/api/files/b.bin", data, pause=0.15).start()
        theirs = SlowSend("PUT", f"{doomed.url}/api/files/a.bin", data, pause=0.1).start()
        mine.wait_sent(2 * MiB)
        theirs.wait_sent(4 * MiB)

        def owned_by(pid: int) -> list[str]:
            return [n for n in leftovers(Path(storage)) if f"-{pid}-" in n]

        deadline = time.monotonic() + 30
        while not owned_by(doomed.process.pid):
            assert time.monotonic() < deadline, "the doomed server wrote no temp file"
            time.sleep(0.05)
        doomed.kill9()
        theirs.join()
        deadline = time.monotonic() + 60
        while owned_by(doomed.process.pid):  # the survivor's next sweep takes them
            assert time.monotonic() < deadline, "a dead server's temp files were never swept"
            time.sleep(0.2)
        if mine.thread is not None and mine.thread.is_alive():
            assert owned_by(survivor.process.pid), "the live upload's temp file was swept"
        mine.join()  # a swept temp file could not be committed: 201 proves it was kept
        assert mine.response is not None
        assert mine.response.status_code == 201
        assert mine.response.json()["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.s3
def test_kill9_mid_post_on_s3_leaves_no_multipart_upload_once_swept(
    tmp_path: Path, seaweed: Seaweed
) -> None:
    """The dead server's multipart upload is aborted by another server's sweep in seconds.

    Not a day later by age: its write lease (ten tus leases: 3 s here) runs out. A
    write on the sweeping server lives through many sweeps and is kept.
    """
    prefix = f"kill9-{uuid.uuid4().hex[:8]}"
    storage = f"s3://{seaweed.bucket}/{prefix}"
    client = seaweed.client()
    data = payload(12 * MiB, seed=8)
    body, content_type = _multipart(data)

    def pending() -> list[str]:
        found = client.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=f"{prefix}/")
        return [u["Key"] for u in found.get("Uploads", [])]

    def leases() -> list[str]:
        listing = client.list_objects_v2(Bucket=seaweed.bucket, Prefix=f"{prefix}/writes/")
        return [entry["Key"] for entry in listing.get("Contents", [])]

    lease = ("--lease", "0.3")
    with (
        serve(tmp_path / "a", *lease, storage=storage, env=seaweed.env()) as doomed,
        serve(
            tmp_path / "b", *lease, "--sweep-interval", "1", storage=storage, env=seaweed.env()
        ) as survivor,
    ):
        headers = {"Content-Type": content_type}
        post = SlowSend("POST", f"{doomed.url}/api/files", body, headers).start()
        post.wait_sent(10 * MiB)  # past one 8 MiB part: the upload exists
        deadline = time.monotonic() + 30
        while not (theirs := pending()):
            assert time.monotonic() < deadline, "the POST began no multipart upload"
            time.sleep(0.05)
        assert leases()
        # About 8 s of sending on the survivor: its own write outlives several sweeps.
        mine = SlowSend("PUT", f"{survivor.url}/api/files/b.bin", data, pause=0.15).start()
        mine.wait_sent(9 * MiB)
        doomed.kill9()
        post.join()
        deadline = time.monotonic() + 60
        while set(theirs) & set(pending()):
            assert time.monotonic() < deadline, "the dead server's upload was never aborted"
            time.sleep(0.2)
        mine.join()
        assert mine.response is not None
        assert mine.response.status_code == 201, mine.response.text
        assert mine.response.json()["sha256"] == hashlib.sha256(data).hexdigest()
        deadline = time.monotonic() + 30
        while pending() or leases():
            assert time.monotonic() < deadline, (pending(), leases())
            time.sleep(0.2)
