"""The tus data path: hashed while received, read back only when another process wrote,
finished through the handler chain, bounded (open uploads, concatenation)."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any, BinaryIO, cast

import httpx
import pytest

from spoolup.files import FileInfo, UploadedFile
from spoolup.handlers import MemoryFileHandler, SkipFile, UploadHandler
from spoolup.tus.state import UploadInfo
from tests.tus.conftest import Env, Server
from tests.tus.test_app import create, patch


class Counted(io.RawIOBase):
    """A stream that adds the bytes read through it to a counter."""

    def __init__(self, inner: BinaryIO, counter: list[int]) -> None:
        super().__init__()
        self.inner = inner
        self.counter = counter

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.inner.readinto(buffer)  # type: ignore[attr-defined]
        self.counter[0] += n or 0
        return int(n or 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.inner.seek(offset, whence)

    def close(self) -> None:
        self.inner.close()
        super().close()


def count_data_reads(env: Env) -> list[int]:
    """A counter of the upload data bytes the storage is read for, from now on."""
    counter = [0]
    real_open = env.storage.open

    def open_(key: str, *, start: int = 0, end: int | None = None) -> BinaryIO:
        stream = real_open(key, start=start, end=end)
        if not key.endswith("/data"):
            return stream
        return cast("BinaryIO", io.BufferedReader(Counted(stream, counter)))

    env.storage.open = open_  # type: ignore[method-assign]
    real_open_written = env.storage.open_written

    def open_written(key: str, upload_id: str, start: int, end: int) -> BinaryIO | None:
        stream = real_open_written(key, upload_id, start, end)
        assert stream is not None
        return cast("BinaryIO", io.BufferedReader(Counted(stream, counter)))

    env.storage.open_written = open_written  # type: ignore[method-assign]
    return counter


def send_in_chunks(
    client: httpx.Client, servers: list[Server], url_path: str, data: bytes, size: int
) -> None:
    """PATCH ``data`` in ``size`` chunks, to the servers in turn."""
    for n, start in enumerate(range(0, len(data), size)):
        server = servers[n % len(servers)]
        r = patch(client, server.base + url_path, start, data[start : start + size])
        assert r.status_code == 204, r.text


def test_one_server_never_reads_the_upload_back(env: Env, client: httpx.Client) -> None:
    reads = count_data_reads(env)
    server = env.start()
    data = os.urandom(300_000)
    url = create(client, server, len(data))
    send_in_chunks(client, [server], url.removeprefix(server.base), data, 64_000)
    (call,) = env.completed.calls
    assert call["sha256"] == hashlib.sha256(data).hexdigest()
    # Only the test's own Completed callback read the file: the hash came from the PATCHes.
    assert reads == [len(data)]


def test_read_back_only_when_another_process_took_over(env: Env, client: httpx.Client) -> None:
    reads = count_data_reads(env)
    first, second = env.start(), env.start()
    data = os.urandom(300_000)
    url = create(client, first, len(data))
    # Two processes (two apps, each with its own memory) take turns on one upload: the
    # first one hashed the first chunk, then reads back only the chunks the second one
    # wrote (2 of 64,000 bytes) as they come, and finishes it with no more read-back.
    send_in_chunks(client, [first, second], url.removeprefix(first.base), data, 64_000)
    (call,) = env.completed.calls
    assert call["sha256"] == hashlib.sha256(data).hexdigest()
    assert reads == [2 * 64_000 + len(data)]  # the missed chunks, then the callback's read
    # Back to one process for a new upload: no read-back again.
    url = create(client, second, len(data))
    send_in_chunks(client, [second], url.removeprefix(second.base), data, 64_000)
    assert env.completed.calls[1]["sha256"] == call["sha256"]
    assert reads == [2 * 64_000 + 2 * len(data)]


def test_restart_reads_back_what_it_did_not_see(env: Env, client: httpx.Client) -> None:
    reads = count_data_reads(env)
    first = env.start()
    data = os.urandom(200_000)
    url = create(client, first, len(data))
    assert patch(client, url, 0, data[:100_000]).status_code == 204
    first.stop()
    second = env.start()
    r = patch(client, url.replace(first.base, second.base), 100_000, data[100_000:])
    assert r.status_code == 204
    assert env.completed.calls[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert reads == [2 * len(data)]


def test_a_storing_handler_keeps_the_file(env: Env, client: httpx.Client) -> None:
    # MemoryFileHandler takes the file (later handlers never see it): the callback gets
    # its in-memory copy, with the sha256 computed while receiving.
    server = env.start(handlers=[MemoryFileHandler])
    url = create(client, server, 6)
    assert patch(client, url, 0, b"abc").status_code == 204
    assert patch(client, url, 3, b"def").status_code == 204
    (call,) = env.completed.calls
    assert call["data"] == b"abcdef"
    assert call["path"] is None
    assert call["sha256"] == hashlib.sha256(b"abcdef").hexdigest()


class Skipping(UploadHandler):
    """Refuses every file without failing the request."""

    def new_file(self, info: FileInfo) -> None:
        raise SkipFile


def test_a_skipping_handler_drops_the_file(env: Env, client: httpx.Client) -> None:
    server = env.start(handlers=[Skipping])
    url = create(client, server, 3)
    r = patch(client, url, 0, b"abc")
    assert r.status_code == 204
    assert "spoolup-file-id" not in r.headers
    assert env.completed.calls == []
    upload_id = url.rsplit("/", 1)[1]
    assert not env.has_data(upload_id)
    # The upload is whole, so a resuming client is told it is done.
    assert client.head(url).headers["upload-offset"] == "3"


def test_open_uploads_are_capped(env: Env, client: httpx.Client) -> None:
    server = env.start(max_open_uploads=2)
    a = create(client, server, 2)
    create(client, server, 2)
    r = client.post(server.url, headers={"Upload-Length": "2"})
    assert r.status_code == 429
    assert "too many unfinished uploads (2)" in r.json()["error"]
    # Finishing one makes room, and so does deleting one.
    assert patch(client, a, 0, b"ab").status_code == 204
    c = create(client, server, 2)
    assert client.delete(c).status_code == 204
    create(client, server, 2)


def test_open_uploads_are_counted_once(env: Env, client: httpx.Client) -> None:
    first = env.start(max_open_uploads=2)
    create(client, first, 2)
    create(client, first, 2)
    # A new server counts what it finds (once), not per creation.
    listed: list[int] = []
    real_ids = env.store.ids

    def ids() -> Any:
        listed.append(1)
        return real_ids()

    env.store.ids = ids  # type: ignore[method-assign]
    second = env.start(max_open_uploads=3)
    create(client, second, 2)
    assert client.post(second.url, headers={"Upload-Length": "2"}).status_code == 429
    assert client.post(second.url, headers={"Upload-Length": "2"}).status_code == 429
    assert listed == [1]


def test_concatenation_is_bounded(env: Env, client: httpx.Client) -> None:
    server = env.start(max_size=5)
    a = create(client, server, 3, **{"Upload-Concat": "partial"})
    assert patch(client, a, 0, b"abc").status_code == 204
    path = a.removeprefix(server.base)

    def final(urls: str) -> httpx.Response:
        return client.post(server.url, headers={"Upload-Concat": f"final;{urls}"})

    # A partial upload may appear once: no amplification by naming it many times.
    r = final(f"{path} {path}")
    assert (r.status_code, r.json()) == (400, {"error": r.json()["error"]})
    assert "more than once" in r.json()["error"]
    # Only this server's own upload paths.
    for url in (f"http://elsewhere.example{path}", f"/other{path}"):
        r = final(url)
        assert r.status_code == 400
        assert "not an upload of this server" in r.json()["error"]
    # The final size obeys max_size.
    b = create(client, server, 3, **{"Upload-Concat": "partial"})
    assert patch(client, b, 0, b"def").status_code == 204
    assert final(f"{path} {b}").status_code == 413
    assert env.completed.calls == []


def test_concatenation_hashes_while_copying(env: Env, client: httpx.Client) -> None:
    reads = count_data_reads(env)
    server = env.start()
    parts = [os.urandom(70_000), os.urandom(50_000)]
    urls = []
    for data in parts:
        url = create(client, server, len(data), **{"Upload-Concat": "partial"})
        assert patch(client, url, 0, data).status_code == 204
        urls.append(url.removeprefix(server.base))
    r = client.post(server.url, headers={"Upload-Concat": "final;" + " ".join(urls)})
    assert r.status_code == 201
    (call,) = env.completed.calls
    assert call["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    total = sum(map(len, parts))
    assert reads == [2 * total]  # each part copied once, then the callback's read


@pytest.mark.parametrize("kind", ["checksum", "plain"])
def test_cut_short_patch_keeps_the_hash_state(env: Env, client: httpx.Client, kind: str) -> None:
    """A refused chunk (bad checksum) leaves the hash state as it was."""
    reads = count_data_reads(env)
    server = env.start()
    url = create(client, server, 6)
    assert patch(client, url, 0, b"abc").status_code == 204
    if kind == "checksum":
        bad = "sha1 " + "A" * 27 + "="
        assert patch(client, url, 3, b"xyz", **{"Upload-Checksum": bad}).status_code == 460
    assert patch(client, url, 3, b"def").status_code == 204
    assert env.completed.calls[0]["sha256"] == hashlib.sha256(b"abcdef").hexdigest()
    assert reads == [6]


def test_upload_info_keeps_its_checkpoint() -> None:
    info = UploadInfo(id="A" * 22, length=10, offset=6, synced=4)
    again = UploadInfo.from_json(info.to_json())
    assert (again.offset, again.synced) == (6, 4)


def test_uploaded_file_is_the_stored_object(env: Env, client: httpx.Client) -> None:
    got: list[UploadedFile] = []

    def keep(file: UploadedFile, info: UploadInfo) -> None:
        got.append(file)

    server = env.start(on_complete=keep)
    url = create(client, server, 2)
    assert patch(client, url, 0, b"ok").status_code == 204
    (file,) = got
    assert getattr(file, "key", None) == env.store.key(url.rsplit("/", 1)[1], "data")


def lose_bytes_after_a_checkpoint(
    env: Env, client: httpx.Client, data: bytes, first: Server
) -> str:
    """A power loss: the state (saved between checkpoints, not synced) counts bytes the
    data file no longer holds; simulated by cutting the file. Returns the upload's path.

    Checkpoint at 250,000 (one PATCH of one batch, past ``checkpoint_bytes``), offset
    300,000 (the next PATCH, short of it), data cut to 270,000.
    """
    url = create(client, first, len(data))
    assert patch(client, url, 0, data[:250_000]).status_code == 204
    assert patch(client, url, 250_000, data[250_000:300_000]).status_code == 204
    path = url.removeprefix(first.base)
    info = env.store.load(path.rsplit("/", 1)[1])
    assert info is not None
    assert (info.offset, info.synced) == (300_000, 250_000)
    (file,) = env.root.glob(f"*/{info.backend['mpu']}/data")
    os.truncate(file, 270_000)
    return path


def test_bytes_lost_after_the_last_checkpoint_fall_back_to_it(
    env: Env, client: httpx.Client
) -> None:
    first = env.start(checkpoint_bytes=100_000, checkpoint_seconds=3600.0)
    data = os.urandom(400_000)
    path = lose_bytes_after_a_checkpoint(env, client, data, first)
    first.stop()
    url = env.start().base + path
    r = patch(client, url, 300_000, data[300_000:])
    assert r.status_code == 409, r.text
    assert "250000" in r.text
    assert client.head(url).headers["upload-offset"] == "250000"
    assert patch(client, url, 250_000, data[250_000:]).status_code == 204
    (call,) = env.completed.calls
    assert call["sha256"] == hashlib.sha256(data).hexdigest()
    assert call["data"] == data


def test_patches_shorter_than_a_checkpoint_still_reach_one(env: Env, client: httpx.Client) -> None:
    # Checkpoints count the upload's bytes since its last one, whatever requests they
    # came in: a power loss can never take more than one interval of them.
    server = env.start(checkpoint_bytes=200_000, checkpoint_seconds=3600.0)
    data = os.urandom(500_000)
    url = create(client, server, len(data))
    upload_id = url.rsplit("/", 1)[1]
    saved = []
    for start in range(0, 400_000, 100_000):
        assert patch(client, url, start, data[start : start + 100_000]).status_code == 204
        info = env.store.load(upload_id)
        assert info is not None
        saved.append((info.offset, info.synced))
    assert saved == [(100_000, 0), (200_000, 200_000), (300_000, 200_000), (400_000, 400_000)]
    assert patch(client, url, 400_000, data[400_000:]).status_code == 204
    (call,) = env.completed.calls
    assert call["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_head_after_a_power_loss_reports_the_checkpoint(env: Env, client: httpx.Client) -> None:
    # As above, but the client asks first: it is told the offset it can go on from,
    # and going on from there is accepted at once.
    first = env.start(checkpoint_bytes=100_000, checkpoint_seconds=3600.0)
    data = os.urandom(400_000)
    path = lose_bytes_after_a_checkpoint(env, client, data, first)
    first.stop()
    url = env.start().base + path
    assert client.head(url).headers["upload-offset"] == "250000"
    assert patch(client, url, 250_000, data[250_000:]).status_code == 204
    (call,) = env.completed.calls
    assert call["sha256"] == hashlib.sha256(data).hexdigest()
    assert call["data"] == data


def test_a_fall_back_to_a_checkpoint_voids_hash_states(env: Env, client: httpx.Client) -> None:
    # The first server hashed 300,000 bytes; the bytes after its checkpoint (250,000)
    # are lost, and the second server takes other bytes from 250,000 on. When the first
    # one finishes the upload, its hash of the old bytes must not be used.
    first = env.start(checkpoint_bytes=100_000, checkpoint_seconds=3600.0)
    second = env.start()
    data = os.urandom(400_000)
    path = lose_bytes_after_a_checkpoint(env, client, data, first)
    assert patch(client, second.base + path, 300_000, data[300_000:]).status_code == 409
    other = os.urandom(60_000)
    assert patch(client, second.base + path, 250_000, other).status_code == 204
    assert patch(client, first.base + path, 310_000, data[310_000:]).status_code == 204
    stored = data[:250_000] + other + data[310_000:]
    (call,) = env.completed.calls
    assert call["data"] == stored
    assert call["sha256"] == hashlib.sha256(stored).hexdigest()
