"""tus inside ``spoolup serve``: a finished upload becomes a file record without a copy.

The upload's bytes are hashed while they arrive, never read back, and end up at
``files/<id>`` without being copied: renamed there on local storage, assembled there
from the start on S3. Both are checked by watching the storage: no read of the
upload's data, no write of the file's, and no server-side copy on S3.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest

from spoolup.files import FileInfo, UploadedFile
from spoolup.server.config import ServerConfig
from spoolup.server.store import RecordStore
from spoolup.storage import ObjectInfo, ObjectMeta, ObjectWriter, Storage, StorageError
from spoolup.storage.local import UPLOADS_DIR, LocalStorage
from spoolup.storage.s3 import S3Storage
from spoolup.tus.client import tus_upload
from tests.seaweed import Seaweed
from tests.server.conftest import RunningServer, start_server

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


class Watch:
    """Which keys a storage opened for reading and for writing."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.moves: list[tuple[str, str]] = []


def watched(storage: Storage, watch: Watch) -> Storage:
    """``storage`` with its ``open``, ``open_writer`` and ``move`` recorded in ``watch``."""
    real_open, real_writer, real_move = storage.open, storage.open_writer, storage.move

    def open_(key: str, *, start: int = 0, end: int | None = None) -> BinaryIO:
        watch.reads.append(key)
        return real_open(key, start=start, end=end)

    def open_writer(key: str, meta: ObjectMeta | None = None) -> ObjectWriter:
        watch.writes.append(key)
        return real_writer(key, meta)

    def move(src: str, dest: str, **kw: Any) -> ObjectInfo:
        watch.moves.append((src, dest))
        return real_move(src, dest, **kw)

    storage.open = open_  # type: ignore[method-assign]
    storage.open_writer = open_writer  # type: ignore[method-assign]
    storage.move = move  # type: ignore[method-assign]
    return storage


def create(client: httpx.Client, size: int, name: str) -> str:
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"filename": name, "filetype": "application/x-test"}.items()
    )
    response = client.post(
        "/tus/", headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": meta}
    )
    assert response.status_code == 201, response.text
    return response.headers["location"]


def patch(client: httpx.Client, url: str, offset: int, chunk: bytes) -> httpx.Response:
    headers = {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }
    response = client.patch(url, content=chunk, headers=headers)
    assert response.status_code == 204, response.text
    return response


def decoded_record(headers: Mapping[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(base64.b64decode(headers["spoolup-file-record"]))
    return record


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[RunningServer, LocalStorage, Watch]]:
    watch = Watch()
    storage = LocalStorage(tmp_path / "storage")
    watched(storage, watch)
    (tmp_path / "tmp").mkdir()
    config = ServerConfig(storage=str(tmp_path / "storage"))
    running = start_server(config, tmp_path / "tmp", store=RecordStore(storage))
    yield running, storage, watch
    running.stop()


def test_local_upload_is_renamed_into_place(
    local_server: tuple[RunningServer, LocalStorage, Watch],
) -> None:
    running, storage, watch = local_server
    data = os.urandom(3 * MiB + 5)
    with running.client() as client:
        url = create(client, len(data), "big.bin")
        patch(client, url, 0, data[:MiB])
        (part,) = (storage.root / UPLOADS_DIR).glob("*/data")
        inode = part.stat().st_ino
        last = patch(client, url, MiB, data[MiB:])
        record = decoded_record(last.headers)
        assert last.headers["spoolup-file-id"] == record["id"]
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert (record["filename"], record["size"]) == ("big.bin", len(data))
        assert record["content_type"] == "application/x-test"
        assert client.get("/api/files").json() == [record]
        assert client.get(f"/api/files/{record['id']}").content == data
        head = client.head(url, headers=TUS)
        assert decoded_record(head.headers) == record
    # The same file, never copied: renamed from the upload's folder to files/<id>.
    assert (storage.root / "files" / record["id"]).stat().st_ino == inode
    upload_id = url.rsplit("/", 1)[1]
    assert [k for k in watch.reads if k.endswith("/data")] == []
    assert [k for k in watch.writes if k.startswith("files/")] == []
    left = sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file())
    assert left == [
        f"files/.{record['id']}.meta.json",
        f"files/{record['id']}",
        f"tus/{upload_id}/.info.meta.json",
        f"tus/{upload_id}/info",
    ]


@pytest.fixture
def s3_server(seaweed: Seaweed, tmp_path: Path) -> Iterator[tuple[RunningServer, S3Storage, Watch]]:
    watch = Watch()
    storage = S3Storage(seaweed.bucket, f"srv-{uuid.uuid4().hex[:12]}", client=seaweed.client())
    watched(storage, watch)
    (tmp_path / "tmp").mkdir()
    config = ServerConfig(storage=str(tmp_path / "unused"))
    running = start_server(config, tmp_path / "tmp", store=RecordStore(storage))
    yield running, storage, watch
    running.stop()


@pytest.mark.s3
def test_s3_upload_is_assembled_at_its_final_key(
    s3_server: tuple[RunningServer, S3Storage, Watch],
) -> None:
    running, storage, watch = s3_server
    data = os.urandom(9 * MiB + 1)
    with running.client() as client:
        url = create(client, len(data), "s3 file.bin")
        patch(client, url, 0, data[: 8 * MiB])
        assert client.get("/api/files").json() == []  # nothing listed before it is whole
        record = decoded_record(patch(client, url, 8 * MiB, data[8 * MiB :]).headers)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert client.get("/api/files").json() == [record]
        assert client.get(f"/api/files/{record['id']}").content == data
        # Terminating the finished upload, or its expiry, removes the upload's state
        # only: the file is the server's now.
        assert client.delete(url, headers=TUS).status_code == 204
        assert client.get(f"/api/files/{record['id']}").content == data
    upload_id = url.rsplit("/", 1)[1]
    assert [k for k in watch.reads if k.endswith("/data")] == []
    assert [k for k in watch.writes if k.startswith("files/")] == []
    assert watch.moves == []  # no server-side copy: completed where it stays
    stat = storage.stat(f"files/{record['id']}")
    assert (stat.sha256, stat.filename, stat.size) == (record["sha256"], "s3 file.bin", len(data))
    assert stat.content_type == "application/x-test"
    assert [i.key for i in storage.list("tus/").items] == []
    assert not storage.exists(f"tus/{upload_id}/data")


@pytest.mark.s3
def test_s3_upload_hashed_after_completion_records_its_digest(
    s3_server: tuple[RunningServer, S3Storage, Watch],
) -> None:
    # The server that finishes an upload another server began cannot hash the parts
    # it did not see before they are completed: it hashes the object afterwards and
    # records the digest on it.
    running, storage, watch = s3_server
    data = os.urandom(6 * MiB + 3)
    with running.client() as client:
        url = create(client, len(data), "two.bin")
        patch(client, url, 0, data[: 6 * MiB])
    other = start_server(running.config, running.tmpdir, store=RecordStore(storage))
    try:
        with other.client() as client:
            path = httpx.URL(url).path
            record = decoded_record(patch(client, path, 6 * MiB, data[6 * MiB :]).headers)
            assert record["sha256"] == hashlib.sha256(data).hexdigest()
            assert client.get(f"/api/files/{record['id']}").content == data
    finally:
        other.stop()
    assert storage.stat(f"files/{record['id']}").sha256 == record["sha256"]
    assert [d for _, d in watch.moves] == [f"files/{record['id']}"]


@pytest.mark.s3
def test_s3_partial_uploads_are_no_files(
    s3_server: tuple[RunningServer, S3Storage, Watch],
) -> None:
    running, storage, _ = s3_server
    first, second = os.urandom(5 * MiB), os.urandom(1000)
    partial = {**TUS, "Upload-Concat": "partial"}
    with running.client() as client:
        urls = []
        for chunk in (first, second):
            created = client.post("/tus/", headers={**partial, "Upload-Length": str(len(chunk))})
            assert created.status_code == 201, created.text
            urls.append(created.headers["location"])
            patch(client, urls[-1], 0, chunk)
        assert client.get("/api/files").json() == []
        paths = " ".join(httpx.URL(u).path for u in urls)
        final = client.post("/tus/", headers={**TUS, "Upload-Concat": f"final;{paths}"})
        assert final.status_code == 201, final.text
        record = decoded_record(final.headers)
        assert client.get("/api/files").json() == [record]
        assert client.get(f"/api/files/{record['id']}").content == first + second
    assert record["sha256"] == hashlib.sha256(first + second).hexdigest()
    assert [i.key for i in storage.list("files/").items] == [f"files/{record['id']}"]


class FailingTwice(LocalStorage):
    """A LocalStorage whose first two moves fail, as a storage outage at the worst moment."""

    failures = 0

    def move(self, src: str, dest: str, **kw: Any) -> ObjectInfo:
        """Fail twice, then move."""
        if self.failures < 2:
            self.failures += 1
            raise StorageError("the disk went away")
        return super().move(src, dest, **kw)


def test_completion_cut_short_is_run_again(tmp_path: Path) -> None:
    storage = FailingTwice(tmp_path / "storage")
    (tmp_path / "tmp").mkdir()
    config = ServerConfig(storage=str(tmp_path / "storage"))
    running = start_server(config, tmp_path / "tmp", store=RecordStore(storage))
    src = tmp_path / "f.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    state = tmp_path / "state.json"
    try:
        # The last PATCH fails (500), and so does the completion run again by the HEAD
        # that follows; the empty PATCH sent to finish it hands the file on.
        result = tus_upload(src, f"{running.url}/tus/", state_file=state, retries=0)
        assert storage.failures == 2
        assert result.record is not None
        assert result.record["sha256"] == result.sha256 == hashlib.sha256(data).hexdigest()
        with running.client() as client:
            assert client.get("/api/files").json() == [result.record]
            # And only once: a HEAD or another PATCH names the same record.
            again = tus_upload(src, f"{running.url}/tus/", state_file=state, retries=0)
            assert again.record is not None
            assert again.record["id"] != result.record["id"]  # a new upload of the file
            assert len(client.get("/api/files").json()) == 2
    finally:
        running.stop()


async def test_adopt_copies_a_file_from_elsewhere(tmp_path: Path) -> None:
    # A file not in the store's storage (another store, a temp file) is copied in.
    store = RecordStore(LocalStorage(tmp_path / "storage"))
    info = FileInfo(field_name="", filename="x.txt", content_type=None)
    record = await store.adopt(UploadedFile.from_bytes(info, b"elsewhere"))
    assert record["sha256"] == hashlib.sha256(b"elsewhere").hexdigest()
    assert record["content_type"] == "application/octet-stream"
    assert store.storage.read_bytes(f"files/{record['id']}") == b"elsewhere"
