"""A full disk (a small tmpfs): 507s, nothing unaccounted, delete and download work, recovery."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos.conftest import TUS, MiB, leftovers, payload
from tests.serve_process import serve

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only), unmounted at the end."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root: the full-disk tests did not run")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip()}): full-disk tests skipped"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the disk is full; return it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (MiB, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def upload_bytes(storage: Path) -> int:
    return sum(p.stat().st_size for p in (storage / ".uploads").rglob("*") if p.name == "data")


def test_full_storage_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "32m") as disk:
        storage = disk / "data"
        with (
            serve(tmp_path, "--min-free-space", "1MiB", storage=str(storage)) as running,
            httpx.Client(base_url=running.url, timeout=60) as client,
        ):
            kept = client.put("/api/files/kept.txt", content=b"kept").json()
            created = client.post("/tus/", headers={**TUS, "Upload-Length": str(64 * MiB)})
            location = created.headers["location"]
            big = client.patch(
                location, content=payload(40 * MiB), headers={**OCTETS, "Upload-Offset": "0"}
            )
            assert big.status_code == 507, big.text
            assert "/" not in big.json()["error"]  # no server path
            offset = int(client.head(location, headers=TUS).headers["upload-offset"])
            # Nothing unaccounted: the upload holds what its offset says (give or take
            # the batch a checkpoint may have synced without counting).
            assert offset <= upload_bytes(storage) <= offset + 2 * MiB
            assert leftovers(storage) == []

            filler = fill(disk)
            health = client.get("/healthz")
            assert health.status_code == 503
            assert "storage is full" in health.json()["error"]
            assert client.put("/api/files/more.bin", content=payload(2 * MiB)).status_code == 507
            assert leftovers(storage) == []
            # Reading and deleting need no room.
            assert client.get(f"/api/files/{kept['id']}").content == b"kept"
            assert client.delete(f"/api/files/{kept['id']}").status_code == 204
            assert client.delete(location, headers=TUS).status_code == 204
            assert upload_bytes(storage) == 0

            filler.unlink()  # room again: everything works at once
            assert client.get("/healthz").status_code == 200
            again = client.put("/api/files/again.bin", content=payload(3 * MiB, seed=3))
            assert again.status_code == 201
            assert again.json()["sha256"] == hashlib.sha256(payload(3 * MiB, seed=3)).hexdigest()
            data = payload(6 * MiB, seed=4)
            created = client.post("/tus/", headers={**TUS, "Upload-Length": str(len(data))})
            done = client.patch(
                created.headers["location"], content=data, headers={**OCTETS, "Upload-Offset": "0"}
            )
            assert done.status_code == 204


def test_full_temp_folder_under_a_checksummed_patch(tmp_path: Path) -> None:
    with (
        tmpfs(tmp_path / "tmp", "2m"),
        serve(tmp_path, "--min-free-space", "64KiB") as running,
        httpx.Client(base_url=running.url, timeout=60) as client,
    ):
        data = payload(4 * MiB, seed=5)
        created = client.post("/tus/", headers={**TUS, "Upload-Length": str(len(data))})
        location = created.headers["location"]
        digest = base64.b64encode(hashlib.sha1(data).digest()).decode()
        checksum = {"Upload-Checksum": f"sha1 {digest}", "Connection": "close"}
        # Its own connection: the server answers before the body is all sent.
        with httpx.Client(base_url=running.url, timeout=60) as once:
            checked = once.patch(
                location, content=data, headers={**OCTETS, "Upload-Offset": "0", **checksum}
            )
        assert checked.status_code == 507, checked.text
        assert client.head(location, headers=TUS).headers["upload-offset"] == "0"
        assert client.get("/healthz").status_code == 200  # the spool is gone again
