"""Three ``spoolup serve`` behind HAProxy on a SeaweedFS cluster, one server killed twice.

The layout of docs/deploy.md, all on 127.0.0.1: a SeaweedFS master, two volume servers
and a filer with the S3 gateway; three servers on one bucket; HAProxy with
``deploy/haproxy.cfg`` (round robin, no stickiness). While 20 tus uploads run at once
(10 from tuspy, 10 from tus-js-client under Node) and multipart POSTs keep coming, one
server is ``kill -9``ed and restarted, twice. The uploads are of 100 MB each, as issue
12 asks (2 GB in all, about 100 s of the suite on a shared two-core machine), sent in
2 MiB chunks; every upload spans both kills.

The run happens once (module fixture); each test checks one of its promises.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from tests.browser import chromium
from tests.cluster.balancer import Balancer, haproxy_binary
from tests.cluster.seaweed_cluster import SeaweedCluster, start_cluster
from tests.cluster.servers import SpoolupServer

pytestmark = [pytest.mark.s3, pytest.mark.slow]

MiB = 1024 * 1024
CHUNK = 2 * MiB
UPLOADS = 20
SIZE = 100 * 1000 * 1000  # 100 MB each, as issue 12 asks: 2 GB through the balancer
PREFIX = "cluster"
JS = Path(__file__).parent / "tus_many.mjs"
TUS_JS = Path(__file__).parents[1] / "tus" / "js"


@dataclass
class Cluster:
    store: SeaweedCluster
    servers: list[SpoolupServer]
    balancer: Balancer

    def client(self) -> Any:
        return self.store.s3.client()


@dataclass
class Upload:
    path: Path
    sha256: str
    size: int
    client: str
    creates: int = 0
    offsets: list[int] = field(default_factory=list)
    record: dict[str, Any] | None = None


@dataclass
class Post:
    """A multipart POST cut by a kill, and its retry."""

    cut: str  # what the client saw when the server died under it
    record: dict[str, Any]
    sha256: str


@dataclass
class Run:
    uploads: list[Upload]
    cut_posts: list[Post]
    posts: list[dict[str, Any]]
    kills: int


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    haproxy_binary()  # skip first, before starting anything, if HAProxy is missing
    folder = tmp_path_factory.mktemp("cluster")
    store = start_cluster(folder / "seaweed")
    servers: list[SpoolupServer] = []
    balancer: Balancer | None = None
    try:
        # Frequent sweeps, so that the test sees the orphans of the kills removed soon.
        servers = [
            SpoolupServer(folder / f"s{i}", store.s3, PREFIX, "--sweep-interval", "2")
            for i in (1, 2, 3)
        ]
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_up()
        # Test-only routing on top of the shipped config: a POST carrying this header
        # goes to the named server, so that one is surely in flight when it is killed.
        pins = [
            f"use-server spoolup{i} if {{ req.hdr(x-test-pin) -m str spoolup{i} }}"
            for i in (1, 2, 3)
        ]
        # Even before its health check has seen a restarted server up again.
        pins.append("force-persist if { req.hdr(x-test-pin) -m found }")
        balancer = Balancer(folder / "haproxy", [s.url for s in servers], extra=pins)
        yield Cluster(store, servers, balancer)
    finally:
        if balancer is not None:
            balancer.stop()
        for server in servers:
            server.stop()
        store.stop()
    for server in servers:
        assert "Traceback" not in server.log(), server.log()


def make_files(folder: Path) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(UPLOADS):
        data = random.Random(k).randbytes(SIZE + k * 4099)
        path = folder / f"upload-{k:02d}.bin"
        path.write_bytes(data)
        files.append((path, hashlib.sha256(data).hexdigest()))
    return files


class Progress:
    """Bytes the tuspy uploads have had accepted, to time the kills."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.lock = threading.Condition()

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
            self.lock.notify_all()

    def wait(self, fraction: float, timeout: float = 600) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: self.done >= fraction * self.total, timeout)


def tuspy_upload(url: str, upload: Upload, progress: Progress) -> None:
    """One upload with tuspy in 2 MiB chunks, resumed from the server's offset on errors."""
    with upload.path.open("rb") as stream:
        _tuspy_upload(tus_client.TusClient(url), stream, upload, progress)


def _tuspy_upload(client: Any, stream: Any, upload: Upload, progress: Progress) -> None:
    uploader: Any = None
    deadline = time.monotonic() + 900  # generous: a busy machine is slow, not wrong
    while True:
        try:
            if uploader is None or uploader.url is None:
                upload.creates += 1
                uploader = client.uploader(
                    file_stream=stream,
                    chunk_size=CHUNK,
                    metadata={"filename": upload.path.name},
                )
                uploader.set_url(uploader.create_url())
            while uploader.offset < upload.size:
                upload.offsets.append(uploader.offset)
                before = uploader.offset
                uploader.upload_chunk()
                progress.add(uploader.offset - before)
            last = uploader.request.response_headers if uploader.request is not None else {}
            encoded = last.get("spoolup-file-record") or record_after_a_lost_answer(
                uploader.url, upload.size
            )
            upload.record = json.loads(base64.b64decode(encoded))
            return
        except (TusCommunicationError, TusUploadFailed, requests.RequestException):
            assert time.monotonic() < deadline, f"{upload.path.name} did not finish"
            time.sleep(0.3)
            if uploader is not None and uploader.url is not None:
                try:
                    uploader.offset = uploader.get_offset()
                except (TusCommunicationError, requests.RequestException):
                    continue


def record_after_a_lost_answer(url: str, size: int) -> str:
    """The record of an upload whose last answer was lost when its server was killed.

    The offset (from a HEAD) says every byte arrived, but the answer naming the record
    never came. A HEAD names it once the upload was handed on; if the kill stopped that
    midway, a PATCH at the final offset runs the completion again (as README says).
    """
    tus = {"Tus-Resumable": "1.0.0"}
    head = requests.head(url, headers=tus, timeout=60)
    head.raise_for_status()
    encoded = head.headers.get("spoolup-file-record")
    if encoded is not None:
        return encoded
    patch = requests.patch(
        url,
        data=b"",
        headers={
            **tus,
            "Upload-Offset": str(size),
            "Content-Type": "application/offset+octet-stream",
        },
        timeout=120,
    )
    patch.raise_for_status()
    return patch.headers["spoolup-file-record"]


def multipart(name: str, data: bytes) -> tuple[bytes, bytes, str]:
    boundary = "spoolup-cluster-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


def post_until_stored(url: str, name: str, data: bytes) -> dict[str, Any]:
    """POST through the balancer until a 201; return the one record."""
    head, tail, content_type = multipart(name, data)
    deadline = time.monotonic() + 60
    while True:
        try:
            r = httpx.post(
                f"{url}/api/files",
                content=head + data + tail,
                headers={"Content-Type": content_type},
                timeout=60,
            )
            if r.status_code == 201:
                (record,) = r.json()
                return record  # type: ignore[no-any-return]
            assert r.status_code in {502, 503}, r.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"POST {name} never succeeded"
        time.sleep(0.2)


def write_leases(cluster: Cluster) -> set[str]:
    """The keys of the leases on streamed multipart writes, in the bucket now."""
    listing = cluster.client().list_objects_v2(
        Bucket=cluster.store.s3.bucket, Prefix=f"{PREFIX}/writes/"
    )
    return {entry["Key"] for entry in listing.get("Contents", [])}


def cut_post(cluster: Cluster, victim: int, kill: threading.Event, k: int) -> Post:
    """A POST pinned to the victim, in flight when it dies; then retried until stored."""
    # Past one 8 MiB part: the victim has begun a multipart upload when it dies.
    data = random.Random(1000 + k).randbytes(12 * MiB)
    head, tail, content_type = multipart(f"cut-{k}.bin", data)
    started = threading.Event()

    def body() -> Iterator[bytes]:
        yield head
        # In pieces: one 9 MiB write was not seen by the server until more came.
        for start in range(0, 9 * MiB, 256 * 1024):
            yield data[start : start + 256 * 1024]
        started.set()
        kill.wait(60)
        time.sleep(0.5)  # the victim is dead by now
        yield data[9 * MiB :] + tail

    outcome: list[str] = []

    def send() -> None:
        try:
            r = httpx.post(
                f"{cluster.balancer.url}/api/files",
                content=body(),
                headers={
                    "Content-Type": content_type,
                    "Content-Length": str(len(head) + len(data) + len(tail)),
                    "X-Test-Pin": f"spoolup{victim + 1}",
                },
                timeout=60,
            )
            outcome.append(f"status {r.status_code}")
        except httpx.TransportError as exc:
            outcome.append(type(exc).__name__)

    leases_before = write_leases(cluster)
    thread = threading.Thread(target=send)
    thread.start()
    assert started.wait(30)
    # The first 9 MiB reach the victim, which begins a multipart upload and leases it
    # (a kill between those two requests would leave an upload only its age tells).
    deadline = time.monotonic() + 30
    while not write_leases(cluster) - leases_before:
        assert time.monotonic() < deadline, "the victim leased no multipart upload"
        time.sleep(0.05)
    time.sleep(0.5)  # a part goes to the store
    cluster.servers[victim].kill()
    kill.set()
    thread.join(60)
    (cut,) = outcome
    record = post_until_stored(cluster.balancer.url, f"cut-{k}.bin", data)
    return Post(cut, record, hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def run(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Run:
    node = shutil.which("node")
    assert node is not None, "Node 20 is needed for tus-js-client"
    if not (TUS_JS / "node_modules" / "tus-js-client").is_dir():
        npm = shutil.which("npm")
        assert npm is not None
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TUS_JS, check=True)
    files = make_files(tmp_path_factory.mktemp("files"))
    uploads = [
        Upload(path, sha, path.stat().st_size, "tuspy" if k < UPLOADS // 2 else "tus-js-client")
        for k, (path, sha) in enumerate(files)
    ]
    python_side = [u for u in uploads if u.client == "tuspy"]
    node_side = [u for u in uploads if u.client == "tus-js-client"]
    endpoint = f"{cluster.balancer.url}/tus/"
    progress = Progress(sum(u.size for u in python_side))
    errors: list[BaseException] = []

    def guarded(upload: Upload) -> None:
        try:
            tuspy_upload(endpoint, upload, progress)
        except BaseException as exc:
            errors.append(exc)
            progress.add(upload.size)  # do not keep the kills waiting

    js = subprocess.Popen(
        [node, str(JS), endpoint, str(CHUNK), *(str(u.path) for u in node_side)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    threads = [threading.Thread(target=guarded, args=(u,)) for u in python_side]
    for t in threads:
        t.start()

    # Multipart POSTs through the balancer the whole time, retried when cut.
    posts: list[dict[str, Any]] = []
    stop_posting = threading.Event()

    def keep_posting() -> None:
        k = 0
        while not stop_posting.is_set():
            data = random.Random(2000 + k).randbytes(MiB + k)
            record = post_until_stored(cluster.balancer.url, f"post-{k}.bin", data)
            record["expected"] = hashlib.sha256(data).hexdigest()
            posts.append(record)
            k += 1

    poster = threading.Thread(target=keep_posting)
    poster.start()

    victim = 1
    cut_posts = []
    kills = 0
    try:
        for k, fraction in enumerate((0.25, 0.6)):
            progress.wait(fraction)
            cut_posts.append(cut_post(cluster, victim, threading.Event(), k))
            kills += 1
            cluster.servers[victim].start()
        for t in threads:
            t.join(900)
        out, err = js.communicate(timeout=900)
    finally:
        stop_posting.set()
        poster.join(120)
        if js.poll() is None:
            js.kill()
            js.wait()
    assert not errors, errors
    assert js.returncode == 0, err
    for result in json.loads(out.strip().splitlines()[-1]):
        (upload,) = [u for u in node_side if str(u.path) == result["file"]]
        upload.creates = result["creates"]
        upload.offsets = result["offsets"]
        upload.record = result["record"]
    return Run(uploads, cut_posts, posts, kills)


def test_every_tus_upload_completes_and_none_restarts_from_zero(run: Run) -> None:
    assert run.kills == 2
    retried = 0
    wrong = []
    for u in run.uploads:
        chunks = -(-u.size // CHUNK)
        # Each PATCH starts where the last accepted one ended: a cut chunk is sent
        # again from its start, never the upload from zero.
        if (
            u.record is None
            or u.record["sha256"] != u.sha256
            or u.record["size"] != u.size
            or u.creates != 1
            or u.offsets != sorted(u.offsets)
            or len({o for o in u.offsets if o < u.size}) != chunks
        ):
            wrong.append((u.path.name, u.client, u.creates, u.offsets, u.record))
        retried += len(u.offsets) - chunks
    assert wrong == []
    # The kills did cut PATCHes in flight (each has about seven under way).
    assert retried >= 1


def test_posts_cut_by_the_kill_fail_cleanly_then_succeed(run: Run) -> None:
    assert len(run.cut_posts) == 2
    for post in run.cut_posts:
        # The client is told: an error status from the balancer or a broken connection,
        # never a success for a file that was not stored.
        assert not post.cut.startswith("status 2"), post.cut
        assert post.record["sha256"] == post.sha256
    assert run.posts, "no multipart POST went through during the run"
    for record in run.posts:
        assert record["sha256"] == record["expected"]


def test_every_record_is_visible_from_every_server(cluster: Cluster, run: Run) -> None:
    expected = {u.record["id"]: u.sha256 for u in run.uploads if u.record}
    expected |= {p.record["id"]: p.sha256 for p in run.cut_posts}
    expected |= {p["id"]: p["expected"] for p in run.posts}
    for server in cluster.servers:
        deadline = time.monotonic() + 30
        while True:
            listed = {r["id"]: r["sha256"] for r in httpx.get(f"{server.url}/api/files").json()}
            if set(expected) <= set(listed) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert {k: listed.get(k) for k in expected} == expected
    # The bytes, each file read back from a server other than the one that stored it.
    for i, (file_id, sha) in enumerate(sorted(expected.items())):
        server = cluster.servers[i % 3]
        digest = hashlib.sha256()
        with httpx.stream("GET", f"{server.url}/api/files/{file_id}", timeout=60) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                digest.update(chunk)
        assert digest.hexdigest() == sha


def test_nothing_is_left_behind_in_the_bucket(cluster: Cluster, run: Run) -> None:
    """No lease, tail, unfinished tus data, temp object or multipart upload is left.

    The multipart uploads of the POSTs cut by the kills are aborted by the survivors'
    sweeps once their write leases (30 s) run out: waited for, within a deadline.
    """
    client = cluster.client()
    bucket = cluster.store.s3.bucket

    def leftovers() -> tuple[list[str], list[str]]:
        keys = [
            obj["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for obj in page.get("Contents", [])
        ]
        stray = [k for k in keys if k.endswith(("/lock", "/data")) or "/tail" in k or ".tmp" in k]
        found = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return stray, [u["Key"] for u in found]

    deadline = time.monotonic() + 120
    while (left := leftovers()) != ([], []):
        assert time.monotonic() < deadline, left
        time.sleep(1)


def test_the_page_uploads_through_the_balancer(cluster: Cluster, run: Run, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")

    path = tmp_path / "through the balancer.bin"
    data = random.Random(7).randbytes(9 * MiB + 7)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with chromium() as browser:
        page = browser.new_page()
        page.goto(cluster.balancer.url)
        page.set_input_files("#file-input", str(path))
        item = page.locator(f'#queue .item[data-filename="{path.name}"]')
        sync_api.expect(item).to_have_attribute("data-state", "done", timeout=60_000)
        sync_api.expect(item.locator(".item-stats")).to_contain_text(digest[:12])
    for server in cluster.servers:
        deadline = time.monotonic() + 30
        while True:
            found = httpx.get(f"{server.url}/api/files", params={"q": path.name}).json()
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [r["sha256"] for r in found] == [digest]
