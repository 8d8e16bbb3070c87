"""SeaweedFS stopped mid-upload, then started again: 5xx, /healthz 503 then 200, no orphan."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.chaos.conftest import MiB, SlowSend, payload
from tests.seaweed import start_seaweed
from tests.serve_process import serve

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.s3]


def _wait_for(what: str, check: object, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_object_store_outage_mid_upload(tmp_path: Path) -> None:
    seaweed = start_seaweed(tmp_path / "seaweed")
    s3 = seaweed.client()
    prefix = "chaos"

    def incomplete() -> list[str]:
        found = s3.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix + "/")
        return [u["Key"] for u in found.get("Uploads", [])]

    try:
        with serve(
            tmp_path,
            "--sweep-interval",
            "1",
            storage=f"s3://{seaweed.bucket}/{prefix}",
            env=seaweed.env(),
        ) as running:
            _wait_for(
                "the server never saw the store",
                lambda: httpx.get(f"{running.url}/healthz").status_code == 200,
            )
            put = SlowSend("PUT", f"{running.url}/api/files/big.bin", payload(24 * MiB))
            put.start()
            put.wait_sent(12 * MiB)  # past the first 8 MiB part: a multipart upload is open
            _wait_for("no multipart upload was started", lambda: bool(incomplete()))
            seaweed.stop()
            put.join(120)
            assert put.response is not None, put.error
            assert put.response.status_code >= 500
            assert "/" not in put.response.json()["error"]
            health = httpx.get(f"{running.url}/healthz", timeout=30)
            assert health.status_code == 503

            seaweed.restart()
            _wait_for(
                "/healthz did not come back",
                lambda: httpx.get(f"{running.url}/healthz", timeout=30).status_code == 200,
            )
            # The abort that failed during the outage is owed: a sweep does it.
            _wait_for("the orphaned multipart upload was never aborted", lambda: not incomplete())
            assert httpx.get(f"{running.url}/api/files").json() == []
            assert "aborted the orphaned multipart upload" in running.log_text()
            again = httpx.put(f"{running.url}/api/files/again.txt", content=b"back")
            assert again.status_code == 201
    finally:
        seaweed.stop()
