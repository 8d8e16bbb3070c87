"""tus over S3 (SeaweedFS on 127.0.0.1): two servers share one bucket and one upload."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tusclient import client as tus_client

from spoolup._part_buffers import PROCESS_BUFFERS
from spoolup.errors import UploadError
from spoolup.files import FileInfo, UploadedFile
from spoolup.handlers import HandlerSpec, SkipFile, TemporaryFileHandler, UploadHandler
from spoolup.storage import PartInfo, StorageError
from spoolup.storage.s3 import S3Storage
from spoolup.tus import create_tus_app
from spoolup.tus.state import UploadInfo
from spoolup.tus.store import TusStore
from tests.seaweed import Seaweed
from tests.tus.conftest import Completed, Server

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
DATA = bytes(range(256)) * (12 * MiB // 256)


@pytest.fixture
def prefix(seaweed: Seaweed) -> Iterator[str]:
    name = f"tus-{uuid.uuid4().hex[:12]}"
    yield name
    client = seaweed.client()
    listing = client.list_objects_v2(Bucket=seaweed.bucket, Prefix=name)
    for entry in listing.get("Contents", []):
        client.delete_object(Bucket=seaweed.bucket, Key=entry["Key"])


def s3_server(seaweed: Seaweed, prefix: str, completed: Completed) -> Server:
    storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    return Server(create_tus_app(storage, on_complete=completed, sweep_interval=None))


def test_second_server_finishes_what_the_first_began(
    seaweed: Seaweed,
    prefix: str,
) -> None:
    completed = Completed()
    first = s3_server(seaweed, prefix, completed)
    second = s3_server(seaweed, prefix, completed)
    try:
        up = tus_client.TusClient(first.url).uploader(
            file_stream=io.BytesIO(DATA), chunk_size=6 * MiB, metadata={"filename": "s3.bin"}
        )
        up.upload_chunk()  # type: ignore[no-untyped-call]
        url = str(up.url)
        first.stop()
        # 6 MiB is under one 8 MiB part but over S3's 5 MiB minimum: it is sent as a
        # part when the request ends; nothing waits in memory or in the tail object.
        store = TusStore(S3Storage(seaweed.bucket, prefix, client=seaweed.client()))
        info = store.load(url.rsplit("/", 1)[1])
        assert info is not None
        assert (info.offset, info.backend["tail"]) == (6 * MiB, 0)
        assert [p[1] for p in info.backend["parts"]] == [6 * MiB]
        again = tus_client.TusClient(second.url).uploader(
            file_stream=io.BytesIO(DATA),
            chunk_size=6 * MiB,
            url=url.replace(first.base, second.base),
        )
        assert again.offset == 6 * MiB
        again.upload()
    finally:
        second.stop()
    (call,) = completed.calls
    assert call["size"] == len(DATA)
    assert call["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert call["data"] == DATA
    assert call["filename"] == "s3.bin"


def test_bytes_short_of_a_part_wait_in_the_tail(seaweed: Seaweed, prefix: str) -> None:
    # 3 MiB PATCHes are under S3's 5 MiB minimum: they wait in the tail object between
    # requests, and a second server picks them up from there.
    data = DATA[: 17 * MiB + 5]
    completed = Completed()
    first = s3_server(seaweed, prefix, completed)
    second = s3_server(seaweed, prefix, completed)
    try:
        up = tus_client.TusClient(first.url).uploader(
            file_stream=io.BytesIO(data), chunk_size=3 * MiB
        )
        up.upload_chunk()  # type: ignore[no-untyped-call]
        url = str(up.url)
        store = TusStore(S3Storage(seaweed.bucket, prefix, client=seaweed.client()))
        info = store.load(url.rsplit("/", 1)[1])
        assert info is not None
        assert (info.offset, info.backend["tail"], info.backend["parts"]) == (3 * MiB, 3 * MiB, [])
        again = tus_client.TusClient(second.url).uploader(
            file_stream=io.BytesIO(data),
            chunk_size=3 * MiB,
            url=url.replace(first.base, second.base),
        )
        assert again.offset == 3 * MiB
        again.upload()
    finally:
        first.stop()
        second.stop()
    (call,) = completed.calls
    assert call["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_tail_written_by_a_request_that_died_unsaved_corrupts_nothing(
    seaweed: Seaweed, prefix: str
) -> None:
    # State: 3 MiB in the tail. A request then fills part 1, leaves a new tail and dies
    # before saving its state: the next request starts from the saved state, and must
    # continue from the old tail's bytes, not from the first bytes of the new one.
    store = TusStore(S3Storage(seaweed.bucket, prefix, client=seaweed.client()))
    data = os.urandom(12 * MiB)  # no repeating pattern: another tail's bytes differ
    info = UploadInfo(id="t" * 22, length=len(data))
    store.create(info)

    def request(info: UploadInfo, start: int, end: int, *, save: bool) -> None:
        writer = store.writer(info)
        try:
            writer.write(data[start:end])
            writer.flush(final=True)
            if save:
                store.save(info)
        finally:
            writer.close()

    request(info, 0, 3 * MiB, save=True)
    died = store.load(info.id)
    assert died is not None
    request(died, 3 * MiB, 11 * MiB, save=False)  # part 1 of 8 MiB, a 3 MiB tail
    again = store.load(info.id)
    assert again is not None
    assert again.offset == 3 * MiB
    request(again, 3 * MiB, len(data), save=True)
    store.finish(again)
    with store.open(again) as stored:
        assert hashlib.sha256(stored.read()).digest() == hashlib.sha256(data).digest()
    store.delete(info.id)
    client = seaweed.client()
    assert client.list_objects_v2(Bucket=seaweed.bucket, Prefix=prefix).get("KeyCount") == 0


def test_a_tail_cut_short_by_a_late_write_falls_back_to_where_it_ends(
    seaweed: Seaweed, prefix: str
) -> None:
    # The saved state counts 300 KiB in the tail, but a holder that lost the lease wrote
    # its shorter tail late (a PUT slow on the wire) over the one the state describes:
    # the next request must not go on after bytes that are gone (a silently corrupt
    # upload), but fall back to where the tail ends, as the client then resumes.
    storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    store = TusStore(storage)
    data = os.urandom(MiB)
    info = UploadInfo(id="c" * 22, length=len(data))
    store.create(info)
    writer = store.writer(info)
    writer.write(data[: 300 * 1024])
    writer.flush(final=True)
    writer.close()
    store.save(info)
    storage.write(store.tail_key(info.id, 0), data[: 100 * 1024])  # the late write
    again = store.load(info.id)
    assert again is not None
    writer = store.writer(again)
    try:
        assert writer.offset == again.offset == 100 * 1024
        assert again.backend["fallbacks"] == 1
        writer.write(data[writer.offset :])
        writer.flush(final=True)
    finally:
        writer.close()
    store.finish(again)
    with store.open(again) as stored:
        assert hashlib.sha256(stored.read()).digest() == hashlib.sha256(data).digest()


def test_a_patch_over_a_tail_cut_short_answers_409_and_head_the_offset_to_resume(
    seaweed: Seaweed, prefix: str
) -> None:
    completed = Completed()
    first = s3_server(seaweed, prefix, completed)
    second = s3_server(seaweed, prefix, completed)  # keeps nothing of the upload
    data = DATA[:MiB]
    headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    try:
        with httpx.Client(headers={"Tus-Resumable": "1.0.0"}, timeout=60) as client:
            r = client.post(first.url, headers={"Upload-Length": str(len(data))})
            path = r.headers["location"]
            r = client.patch(
                first.base + path, content=data[:300_000], headers={**headers, "Upload-Offset": "0"}
            )
            assert r.status_code == 204, r.text
            store = TusStore(S3Storage(seaweed.bucket, prefix, client=seaweed.client()))
            upload_id = path.rsplit("/", 1)[1]
            store.storage.write(store.tail_key(upload_id, 0), data[:100_000])  # a late write
            r = client.patch(
                second.base + path,
                content=data[300_000:],
                headers={**headers, "Upload-Offset": "300000"},
            )
            assert r.status_code == 409, r.text
            r = client.head(second.base + path)
            assert r.headers["upload-offset"] == "100000"
            r = client.patch(
                second.base + path,
                content=data[100_000:],
                headers={**headers, "Upload-Offset": "100000"},
            )
            assert r.status_code == 204, r.text
    finally:
        first.stop()
        second.stop()
    (call,) = completed.calls
    assert call["data"] == data


def test_no_byte_of_a_reused_part_buffer_reaches_an_object(seaweed: Seaweed, prefix: str) -> None:
    # Part buffers are reused (and new ones are not zeroed): fill the pool with buffers
    # of a byte the data never holds, then write through every path that sends, cuts
    # or keeps a part buffer (a tail, a full part, a short last part; a streamed
    # write's part and tail): no object may hold a byte of them.
    storage = S3Storage(seaweed.bucket, prefix, part_size=5 * MiB, client=seaweed.client())
    store = TusStore(storage, part_size=5 * MiB)
    marked = [PROCESS_BUFFERS.take(5 * MiB) for _ in range(3)]
    for buffer in marked:
        buffer[:] = b"\xaa" * len(buffer)
        PROCESS_BUFFERS.give_back(buffer)
    del marked
    data = os.urandom(6 * MiB).replace(b"\xaa", b"\x55")
    info = UploadInfo(id="p" * 22, length=len(data))
    store.create(info)
    for start, end in ((0, 300 * 1024), (300 * 1024, 5 * MiB + 4096), (5 * MiB + 4096, len(data))):
        writer = store.writer(info)
        try:
            writer.write(data[start:end])
            writer.flush(final=True)
        finally:
            writer.close()
        store.save(info)
    store.finish(info)
    with store.open(info) as stored:
        assert stored.read() == data
    with storage.open_writer("streamed") as out:
        for at in range(0, len(data), 1000 * 1024):
            out.write(data[at : at + 1000 * 1024])
        out.commit()
    assert storage.read_bytes("streamed") == data


class _GatedS3(S3Storage):
    """Part 1 is held back until the writer has filled the next parts."""

    def __init__(self, seaweed: Seaweed, prefix: str) -> None:
        super().__init__(seaweed.bucket, prefix, client=seaweed.client())
        self.gate = threading.Event()
        self.waited: list[bool] = []

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> PartInfo:
        if number == 1:
            # Generous: only a writer that waits for part 1 before filling part 2 is late.
            self.waited.append(self.gate.wait(60))
        return super().upload_part(key, upload_id, number, data)


def test_parts_are_sent_while_the_next_ones_fill(seaweed: Seaweed, prefix: str) -> None:
    storage = _GatedS3(seaweed, prefix)
    store = TusStore(storage)
    data = DATA + DATA[: 8 * MiB]  # 2.5 parts
    info = UploadInfo(id="a" * 22, length=len(data))
    store.create(info)
    writer = store.writer(info)
    try:
        part = store.part_size
        writer.write(data[:part])  # part 1 is on its way, held back
        writer.write(data[part : 2 * part])  # part 2 fills (and goes) meanwhile
        storage.gate.set()
        writer.write(data[2 * part :])
        writer.flush(final=True)
    finally:
        writer.close()
    assert storage.waited == [True]
    # The last half part too: it ends the upload, so it needs no tail.
    assert [p[0] for p in info.backend["parts"]] == [1, 2, 3]
    assert info.offset == len(data)
    store.finish(info)
    with store.open(info) as stored:
        assert stored.read() == data


def test_completion_reads_back_only_what_it_missed(seaweed: Seaweed, prefix: str) -> None:
    # S3 parts cannot be read before the upload is completed: a server that missed
    # some bytes goes on from its hash state at completion, reading back only the rest.
    from tests.tus.test_data_path import Counted

    completed = Completed()
    first = s3_server(seaweed, prefix, completed)
    second = s3_server(seaweed, prefix, completed)
    storage = first.app.store.storage
    read = [0]
    real_open = storage.open

    def open_(key: str, *, start: int = 0, end: int | None = None) -> Any:
        stream = real_open(key, start=start, end=end)
        if not key.endswith("/data"):
            return stream
        return io.BufferedReader(Counted(stream, read))

    storage.open = open_  # type: ignore[method-assign]
    headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    try:
        with httpx.Client(headers={"Tus-Resumable": "1.0.0"}, timeout=60) as client:
            r = client.post(first.url, headers={"Upload-Length": str(len(DATA))})
            path = r.headers["location"]
            for server, start, end in ((first, 0, 6), (second, 6, 9), (first, 9, 12)):
                r = client.patch(
                    server.base + path,
                    content=DATA[start * MiB : end * MiB],
                    headers={**headers, "Upload-Offset": str(start * MiB)},
                )
                assert r.status_code == 204, r.text
    finally:
        first.stop()
        second.stop()
    (call,) = completed.calls
    assert call["sha256"] == hashlib.sha256(DATA).hexdigest()
    # The bytes after the first 6 MiB (it hashed those), then the callback's own read.
    assert read == [6 * MiB + len(DATA)]


class _Recording(S3Storage):
    """Keeps the buffers its parts were sent from."""

    def __init__(self, seaweed: Seaweed, prefix: str) -> None:
        super().__init__(seaweed.bucket, prefix, client=seaweed.client())
        self.sent: list[bytes | bytearray] = []

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> PartInfo:
        self.sent.append(data)
        return super().upload_part(key, upload_id, number, data)


def test_part_buffers_are_reused(seaweed: Seaweed, prefix: str) -> None:
    # Not a fresh 8 MiB per part: that fragments the heap of a busy server.
    storage = _Recording(seaweed, prefix)
    store = TusStore(storage)
    data = DATA[: 8 * MiB] * 2
    info = UploadInfo(id="b" * 22, length=len(data))
    store.create(info)
    made = []
    for start in (0, 8 * MiB):  # two requests, one part each
        writer = store.writer(info)
        try:
            writer.write(data[start : start + 8 * MiB])
            writer.flush(final=True)
        finally:
            writer.close()
        made.append(PROCESS_BUFFERS.made)
    assert len(storage.sent) == 2
    # The pool may hold other idle buffers (earlier tests): the second part took one.
    assert made[1] == made[0]
    store.finish(info)
    with store.open(info) as stored:
        assert hashlib.sha256(stored.read()).digest() == hashlib.sha256(data).digest()


class _Refusing(UploadHandler):
    def new_file(self, info: FileInfo) -> None:
        raise SkipFile


@pytest.mark.parametrize("refused_by", ["handler", "callback", "nobody", "copied"])
def test_final_key_object_belongs_to_the_callback_once_it_took_it(
    seaweed: Seaweed, prefix: str, refused_by: str
) -> None:
    # Assembled at its final key, the object is there when the handlers and the
    # callback run; refused, it is deleted; taken, the tus app never deletes it, not
    # even when the upload expires. "copied": a storing handler kept its own copy,
    # which the callback took: the object at the final key is nobody's, deleted.
    storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    completed = Completed()

    def on_complete(file: UploadedFile, info: UploadInfo) -> dict[str, Any]:
        record = completed(file, info)
        if refused_by == "callback":
            raise UploadError("not this one", status=422)
        return record

    clock = [1_000.0]
    chains: dict[str, list[HandlerSpec]] = {
        "handler": [_Refusing],
        "copied": [TemporaryFileHandler],
    }
    app = create_tus_app(
        storage,
        on_complete=on_complete,
        final_key=lambda info: f"kept/{info.id}",
        handlers=chains.get(refused_by),
        sweep_interval=None,
        expiry=60,
        clock=lambda: clock[0],
    )
    server = Server(app)
    try:
        with httpx.Client(headers={"Tus-Resumable": "1.0.0"}, timeout=60) as client:
            r = client.post(server.url, headers={"Upload-Length": str(len(DATA))})
            upload_id = r.headers["location"].rsplit("/", 1)[1]
            r = client.patch(
                server.base + r.headers["location"],
                content=DATA,
                headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
            )
            assert r.status_code == (422 if refused_by == "callback" else 204), r.text
        clock[0] += 3600
        asyncio.run(app.sweep())
    finally:
        server.stop()
    kept = [i.key for i in storage.list("kept/").items]
    if refused_by == "nobody":
        ((call,),) = (completed.calls,)
        assert call["data"] == DATA
        assert kept == [f"kept/{upload_id}"]
        assert storage.read_bytes(f"kept/{upload_id}") == DATA
    else:
        assert kept == []
        called = refused_by in ("callback", "copied")
        assert [c["data"] for c in completed.calls] == ([DATA] if called else [])
    assert [i.key for i in storage.list("tus/").items] == []


class _AnswerLost(S3Storage):
    """The first CompleteMultipartUpload is done by S3, but its answer never comes back."""

    lost = 0

    def complete_multipart(self, *args: Any, **kwargs: Any) -> Any:
        result = super().complete_multipart(*args, **kwargs)
        if not self.lost:
            self.lost += 1
            raise StorageError("S3 completing the upload failed: connection reset")
        return result


def test_a_completion_whose_answer_was_lost_is_taken_as_done(seaweed: Seaweed, prefix: str) -> None:
    # Asked again (after a crash before the state said so), S3 no longer knows the
    # multipart upload: the object is whole, so the upload is finished, not failed for
    # good.
    storage = _AnswerLost(seaweed.bucket, prefix, client=seaweed.client())
    completed = Completed()
    server = Server(create_tus_app(storage, on_complete=completed, sweep_interval=None))
    try:
        with httpx.Client(headers={"Tus-Resumable": "1.0.0"}, timeout=60) as client:
            r = client.post(server.url, headers={"Upload-Length": str(len(DATA))})
            url = server.base + r.headers["location"]
            r = client.patch(
                url,
                content=DATA,
                headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
            )
            assert (r.status_code, storage.lost) == (204, 1)
    finally:
        server.stop()
    (call,) = completed.calls
    assert (call["data"], call["sha256"]) == (DATA, hashlib.sha256(DATA).hexdigest())


@pytest.mark.parametrize("since", ["saved", "terminated"])
def test_a_save_lands_only_over_the_state_its_store_saw_last(
    seaweed: Seaweed, prefix: str, since: str
) -> None:
    # Another server saved the upload (it took it over), or terminated it, since this
    # store saw it: a save of this store's then fails (423) and changes nothing.
    from spoolup.tus.lock import LeaseLost

    mine = TusStore(S3Storage(seaweed.bucket, prefix, client=seaweed.client()))
    other = TusStore(S3Storage(seaweed.bucket, prefix, client=seaweed.client()))
    info = UploadInfo(id="c" * 22, length=10)
    mine.create(info)
    theirs = other.load(info.id)
    assert theirs is not None
    if since == "saved":
        theirs.offset = 5
        other.save(theirs)
    else:
        other.delete(info.id)
    info.offset = 3
    with pytest.raises(LeaseLost):
        mine.save(info)
    after = other.load(info.id)
    assert (after.offset if after else None) == (5 if since == "saved" else None)
    if after is not None:  # once it has read the state afresh, it may save again
        again = mine.load(info.id)
        assert again is not None
        mine.save(again)


class _StateLost(S3Storage):
    """Every save of an upload's state fails, as S3 going away mid-creation."""

    def write_if(self, key: str, data: bytes, *, tag: str | None, durable: bool = True) -> Any:
        raise StorageError("S3 writing the state failed: connection reset")


def test_a_creation_that_fails_leaves_no_multipart_upload(seaweed: Seaweed, prefix: str) -> None:
    # The multipart upload is begun before the state naming it is saved: if the save
    # fails, nobody would ever resume or abort it (only an age-based sweep, a day on).
    storage = _StateLost(seaweed.bucket, prefix, client=seaweed.client())
    server = Server(create_tus_app(storage, final_key=lambda info: f"kept/{info.id}"))
    try:
        r = httpx.post(
            server.url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"}, timeout=30
        )
        assert r.status_code == 500
        # Answered by the tus app itself (no framework around it), in its own words.
        assert r.json() == {"error": "storage failed"}
        assert r.headers["Tus-Resumable"] == "1.0.0"
    finally:
        server.stop()
    listing = storage.client.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix)
    assert listing.get("Uploads", []) == []


def test_an_upload_too_large_for_the_part_numbers_is_refused_at_creation(
    seaweed: Seaweed, prefix: str
) -> None:
    # 10,000 parts of 8 MiB: past about 78 GiB the upload could never finish.
    storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    server = Server(create_tus_app(storage, max_size=1024**4, sweep_interval=None))
    headers = {"Tus-Resumable": "1.0.0"}
    try:
        r = httpx.post(server.url, headers={**headers, "Upload-Length": str(80 * 1024**3)})
        assert r.status_code == 413
        assert "does not fit" in r.text
        r = httpx.post(server.url, headers={**headers, "Upload-Length": str(70 * 1024**3)})
        assert r.status_code == 201
        listing = storage.client.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix)
        assert len(listing.get("Uploads", [])) == 1  # the one that fits
        location = httpx.URL(server.url).join(r.headers["Location"])
        assert httpx.delete(location, headers=headers).status_code == 204
    finally:
        server.stop()
    listing = storage.client.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix)
    assert listing.get("Uploads", []) == []


DIES_AFTER_COMPLETING = """
import os, signal, sys
import uvicorn
from spoolup.storage.s3 import S3Storage
from spoolup.tus import create_tus_app

class Dies(S3Storage):
    def complete_multipart(self, *args, **kwargs):
        super().complete_multipart(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # S3 made the object; no state says so

storage = Dies(sys.argv[1], sys.argv[2])
app = create_tus_app(
    storage, sweep_interval=None, lease=1.0, final_key=lambda info: "kept/" + info.id
)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


@pytest.mark.slow
def test_a_server_killed_right_after_completing_leaves_a_finishable_upload(
    seaweed: Seaweed, prefix: str
) -> None:
    # kill -9 between CompleteMultipartUpload and the state saying so (the PATCH
    # that completes an upload saves no offset). Another server's HEAD finishes the
    # upload: the multipart upload is gone, the object is whole.
    import os
    import signal
    import subprocess
    import sys
    import time

    from benchmarks.serving import free_port
    from tests.tus.test_pending_completion import record_of, wait_until_up

    data = DATA[: 8 * MiB + 1000]
    port = free_port()
    command = [sys.executable, "-c", DIES_AFTER_COMPLETING, seaweed.bucket, prefix, str(port)]
    headers = {"Tus-Resumable": "1.0.0"}
    with subprocess.Popen(command, env={**os.environ, **seaweed.env()}) as doomed:
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_up(url)
            r = httpx.post(url, headers={**headers, "Upload-Length": str(len(data))})
            upload_id = r.headers["location"].rsplit("/", 1)[1]
            with pytest.raises(httpx.TransportError):  # it died answering
                httpx.patch(
                    url + upload_id,
                    content=data,
                    headers={
                        **headers,
                        "Upload-Offset": "0",
                        "Content-Type": "application/offset+octet-stream",
                    },
                    timeout=60,
                )
            assert doomed.wait(30) == -signal.SIGKILL
        finally:
            doomed.kill()
    storage = S3Storage(seaweed.bucket, prefix, client=seaweed.client())
    completed = Completed()
    server = Server(
        create_tus_app(
            storage,
            on_complete=completed,
            sweep_interval=None,
            lease=1.0,
            final_key=lambda info: f"kept/{info.id}",
        )
    )
    try:
        deadline = time.monotonic() + 30
        while (
            "spoolup-file-record"
            not in (head := httpx.head(server.url + upload_id, headers=headers, timeout=30)).headers
        ):
            assert head.headers["upload-offset"] == str(len(data))
            assert time.monotonic() < deadline, "no HEAD finished the upload"
            time.sleep(0.1)
    finally:
        server.stop()
    assert record_of(head)["sha256"] == hashlib.sha256(data).hexdigest()
    assert [c["data"] for c in completed.calls] == [data]
    assert storage.read_bytes(f"kept/{upload_id}") == data
    assert [i.key for i in storage.list("tus/").items] == [f"tus/{upload_id}/info"]


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def test_a_store_refusing_conditional_writes_still_saves(seaweed: Seaweed, prefix: str) -> None:
    # Some S3 stores answer If-Match with 501 (run with --lock redis://): the state is
    # then saved as before, unfenced, rather than never.
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    client = seaweed.client()

    def refuse(request: Any, **_: Any) -> AWSResponse | None:
        if "If-Match" not in request.headers:
            return None
        error = b"<Error><Code>NotImplemented</Code><Message>If-Match</Message></Error>"
        return AWSResponse(request.url, 501, HTTPHeaders(), _Body(error))

    client.meta.events.register("before-send.s3.PutObject", refuse)
    store = TusStore(S3Storage(seaweed.bucket, prefix, client=client))
    info = UploadInfo(id="d" * 22, length=10)
    store.create(info)
    loaded = store.load(info.id)
    assert loaded is not None
    loaded.offset = 4
    store.save(loaded)
    store.save(loaded)
    again = store.load(info.id)
    assert again is not None
    assert again.offset == 4
