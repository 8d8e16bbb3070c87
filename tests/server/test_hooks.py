"""Hooks over real sockets: the server on 127.0.0.1 calls a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spoolup.server.hooks import (
    SIGNATURE_HEADER,
    HookDispatcher,
    HookFailed,
    HookRejected,
    HookRequest,
    HookResponse,
    HttpInfo,
    Webhook,
    parse_answer,
    sign,
    verify_signature,
)
from spoolup.storage import LocalStorage
from tests.server.conftest import RunningServer
from tests.server.hook_receiver import HookReceiver, hook_receiver

TOKEN = "hook-test-token"
SECRET = "hook-test-secret"


def stored_objects(server: RunningServer) -> list[Path]:
    return sorted(p for p in server.storage.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def receiver() -> Iterator[HookReceiver]:
    with hook_receiver() as running:
        yield running


@pytest.fixture
def hooks(receiver: HookReceiver) -> HookReceiver:
    receiver.reset()
    return receiver


@pytest.fixture(scope="module")
def server(make_server: Callable[..., RunningServer], receiver: HookReceiver) -> RunningServer:
    return make_server(
        token=TOKEN,
        hook_url=receiver.url,
        hook_secret=SECRET,
        hook_timeout=2.0,
        hook_progress_interval=0.0,
    )


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client(TOKEN) as c:
        yield c


def test_put_goes_through_every_hook_signed(client: httpx.Client, hooks: HookReceiver) -> None:
    data = b"x" * 300_000
    response = client.put(
        "/api/files/report.txt",
        content=data,
        headers={"Content-Type": "text/plain", "X-Request-ID": "req-put-1"},
    )
    assert response.status_code == 201, response.text
    record = response.json()
    hooks.wait_for(lambda: len(hooks.of("post-finish")) == 1)
    names = [d.hook for d in hooks.deliveries]
    assert names[0] == "pre-create"
    assert {"post-create", "pre-finish", "post-finish"} <= set(names)
    assert names.index("pre-finish") < names.index("post-finish")
    for delivery in hooks.deliveries:
        assert verify_signature(delivery.body, SECRET, delivery.headers[SIGNATURE_HEADER])
        assert not verify_signature(
            delivery.body + b" ", SECRET, delivery.headers[SIGNATURE_HEADER]
        )
        event = delivery.json["Event"]
        assert delivery.json["Type"] == delivery.hook
        assert event["HTTPRequest"]["Method"] == "PUT"
        assert event["HTTPRequest"]["URI"] == "/api/files/report.txt"
        assert event["HTTPRequest"]["RequestID"] == "req-put-1"
        assert delivery.headers["X-Request-ID"] == "req-put-1"
        assert "authorization" not in event["HTTPRequest"]["Header"]  # the token stays here
        assert delivery.upload["Way"] == "put"
        assert delivery.upload["MetaData"]["filename"] == "report.txt"
    pre_create = hooks.of("pre-create")[0].upload
    assert pre_create["ID"] is None
    assert pre_create["Size"] == len(data)
    finish = hooks.of("post-finish")[0].upload
    assert finish["ID"] == record["id"]
    assert finish["Offset"] == finish["Size"] == len(data)
    assert finish["Record"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert finish["Storage"] == {"Type": "spoolup", "Key": f"files/{record['id']}"}
    assert hooks.of("pre-finish")[0].upload["Record"]["id"] == record["id"]


def test_multipart_runs_the_hooks_of_each_file(client: httpx.Client, hooks: HookReceiver) -> None:
    files = [("doc", ("a.txt", b"alpha")), ("doc", ("b.bin", b"beta" * 1000))]
    response = client.post("/api/files", files=files)
    assert response.status_code == 201, response.text
    ids = [r["id"] for r in response.json()]
    hooks.wait_for(lambda: len(hooks.of("post-finish")) == 2)
    created = [d.upload["MetaData"] for d in hooks.of("pre-create")]
    assert [(m["filename"], m["fieldname"]) for m in created] == [
        ("a.txt", "doc"),
        ("b.bin", "doc"),
    ]
    assert hooks.of("pre-create")[0].upload["SizeIsDeferred"] is True
    assert sorted(d.upload["ID"] for d in hooks.of("post-create")) == sorted(ids)
    assert sorted(d.upload["ID"] for d in hooks.of("pre-finish")) == sorted(ids)
    assert all(d.upload["Way"] == "multipart" for d in hooks.deliveries)


def test_post_receive_reports_progress(client: httpx.Client, hooks: HookReceiver) -> None:
    data = b"p" * (3 * 1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    response = client.put("/api/files/big.bin", content=chunks())
    assert response.status_code == 201, response.text
    hooks.wait_for(lambda: len(hooks.of("post-finish")) == 1)
    offsets = [d.upload["Offset"] for d in hooks.of("post-receive")]
    assert offsets, "no post-receive hook"
    assert all(0 < offset <= len(data) for offset in offsets)
    assert all(d.upload["ID"] == response.json()["id"] for d in hooks.of("post-receive"))


@pytest.mark.parametrize("way", ["put", "multipart"])
def test_refused_pre_create_stores_nothing(
    server: RunningServer, client: httpx.Client, hooks: HookReceiver, way: str
) -> None:
    before = stored_objects(server)
    refusal = {
        "RejectUpload": True,
        "HTTPResponse": {"StatusCode": 403, "Body": json.dumps({"message": "no .exe here"})},
    }
    hooks.answer("pre-create", (200, refusal, 0.0))
    if way == "put":
        response = client.put("/api/files/setup.exe", content=b"MZ" * 100_000)
    else:
        response = client.post("/api/files", files={"f": ("setup.exe", b"MZ" * 100_000)})
    assert response.status_code == 403
    assert response.json() == {"error": "no .exe here"}
    assert stored_objects(server) == before
    assert hooks.of("post-create") == []
    assert hooks.of("pre-finish") == []


@pytest.mark.parametrize("way", ["put", "multipart"])
def test_refused_pre_finish_keeps_nothing(
    server: RunningServer, client: httpx.Client, hooks: HookReceiver, way: str
) -> None:
    before = stored_objects(server)
    listed = client.get("/api/files").json()
    hooks.answer("pre-finish", (200, {"RejectUpload": True}, 0.0))
    if way == "put":
        response = client.put("/api/files/virus.txt", content=b"EICAR" * 1000)
    else:
        files = [("f", ("one.txt", b"1" * 5000)), ("f", ("two.txt", b"2" * 5000))]
        response = client.post("/api/files", files=files)
    assert response.status_code == 400
    assert response.json() == {"error": "the upload was refused by the pre-finish hook"}
    assert len(hooks.of("post-create")) == (1 if way == "put" else 2)
    assert stored_objects(server) == before
    assert client.get("/api/files").json() == listed
    assert hooks.of("post-finish") == []


def test_pre_create_adds_metadata(
    server: RunningServer, client: httpx.Client, hooks: HookReceiver
) -> None:
    change = {"ChangeFileInfo": {"MetaData": {"project": "apollo", "owner-id": "42"}}}
    hooks.answer("pre-create", (200, change, 0.0))
    response = client.put("/api/files/notes.md", content=b"# notes")
    assert response.status_code == 201
    file_id = response.json()["id"]
    hooks.wait_for(lambda: len(hooks.of("post-finish")) == 1)
    meta = hooks.of("post-finish")[0].upload["MetaData"]
    assert meta["project"] == "apollo"
    assert meta["owner-id"] == "42"
    assert meta["filename"] == "notes.md"
    assert LocalStorage(server.storage).stat(f"files/{file_id}").metadata == {
        "project": "apollo",
        "owner-id": "42",
    }


def test_bad_metadata_from_a_hook_is_a_502(
    server: RunningServer, client: httpx.Client, hooks: HookReceiver
) -> None:
    before = stored_objects(server)
    hooks.answer("pre-create", (200, {"ChangeFileInfo": {"MetaData": {"Bad Name!": "x"}}}, 0.0))
    response = client.put("/api/files/a.txt", content=b"abc")
    assert response.status_code == 502
    assert "pre-create hook gave unusable metadata" in response.json()["error"]
    assert stored_objects(server) == before


def test_post_terminate_on_delete(client: httpx.Client, hooks: HookReceiver) -> None:
    file_id = client.put("/api/files/gone.txt", content=b"bye").json()["id"]
    assert client.delete(f"/api/files/{file_id}").status_code == 204
    hooks.wait_for(lambda: len(hooks.of("post-terminate")) == 1)
    upload = hooks.of("post-terminate")[0].upload
    assert upload["ID"] == file_id
    assert upload["MetaData"]["filename"] == "gone.txt"


def test_non_blocking_hooks_are_retried(client: httpx.Client, hooks: HookReceiver) -> None:
    hooks.answer("post-finish", (503, None, 0.0), (500, None, 0.0), (200, None, 0.0))
    assert client.put("/api/files/r.txt", content=b"retry me").status_code == 201
    hooks.wait_for(lambda: len(hooks.of("post-finish")) == 3)
    bodies = {d.body for d in hooks.of("post-finish")}
    assert len(bodies) == 1  # the same request each time


def test_a_slow_blocking_hook_is_a_clear_502(
    server: RunningServer, client: httpx.Client, hooks: HookReceiver
) -> None:
    before = stored_objects(server)
    hooks.answer("pre-create", (200, None, 4.0))  # the server waits 2 s
    response = client.put("/api/files/slow.txt", content=b"zzz")
    assert response.status_code == 502
    assert response.json() == {"error": "the pre-create hook could not be reached (TimeoutError)"}
    assert stored_objects(server) == before


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_blocking_hook_is_a_clear_502(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(hook_url=f"http://127.0.0.1:{_closed_port()}/hooks", hook_retries=0)
    with server.client() as client:
        response = client.post("/api/files", files={"f": ("a.txt", b"data")})
        assert response.status_code == 502
        assert response.json()["error"].startswith("the pre-create hook could not be reached")
        assert client.get("/api/files").json() == []
    assert stored_objects(server) == []


def test_python_hooks(make_server: Callable[..., RunningServer]) -> None:
    seen: list[HookRequest] = []

    def pre_create(request: HookRequest) -> HookResponse | None:
        seen.append(request)
        if request.metadata["filename"].endswith(".exe"):
            raise HookRejected("executables are not accepted", status=415)
        return HookResponse(metadata={"checked-by": "python"})

    async def pre_finish(request: HookRequest) -> HookResponse:
        seen.append(request)
        refuse = request.record is not None and request.record["size"] > 100
        return HookResponse(reject=refuse, status=413, message="at most 100 bytes")

    async def post_finish(request: HookRequest) -> None:
        seen.append(request)

    server = make_server(
        {"hooks": {"pre-create": pre_create, "pre-finish": pre_finish, "post-finish": post_finish}}
    )
    with server.client() as client:
        refused = client.put("/api/files/tool.exe", content=b"MZ")
        assert (refused.status_code, refused.json()) == (
            415,
            {"error": "executables are not accepted"},
        )
        too_big = client.put("/api/files/big.txt", content=b"b" * 101)
        assert (too_big.status_code, too_big.json()) == (413, {"error": "at most 100 bytes"})
        assert stored_objects(server) == []
        ok = client.put("/api/files/ok.txt", content=b"fine")
        assert ok.status_code == 201
        end = time.monotonic() + 30
        while not any(r.hook == "post-finish" for r in seen):
            assert time.monotonic() < end
            time.sleep(0.02)
    finish = next(r for r in seen if r.hook == "post-finish")
    assert finish.upload_id == ok.json()["id"]
    assert finish.metadata["checked-by"] == "python"
    assert [r.hook for r in seen].count("pre-create") == 3


def test_unknown_python_hook_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown hook names"):
        HookDispatcher(callables={"pre-upload": lambda r: None})


# -- the pieces, without a server ---------------------------------------------------------


def test_signature_is_github_style() -> None:
    body = b'{"Type":"post-finish"}'
    expected = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(body, "k") == expected
    assert verify_signature(body, "k", expected)
    assert not verify_signature(body, "other", expected)
    assert not verify_signature(body, "k", None)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"", HookResponse()),
        (b"{}", HookResponse()),
        (
            b'{"RejectUpload": true, "HTTPResponse": {"StatusCode": 409, "Body": "taken"}}',
            HookResponse(reject=True, status=409, message="taken"),
        ),
        (
            b'{"RejectUpload": true, "HTTPResponse": {"Body": "{\\"error\\": \\"no\\\\nway\\"}"}}',
            HookResponse(reject=True, message="no way"),
        ),
        (b'{"ChangeFileInfo": {"MetaData": {"a": "b"}}}', HookResponse(metadata={"a": "b"})),
    ],
)
def test_parse_answer(answer: bytes, expected: HookResponse) -> None:
    assert parse_answer("pre-create", answer) == expected


@pytest.mark.parametrize(
    "answer", [b"[]", b"not json", b'{"HTTPResponse": 3}', b'{"ChangeFileInfo": {"MetaData": 1}}']
)
def test_parse_answer_refuses_nonsense(answer: bytes) -> None:
    with pytest.raises(HookFailed):
        parse_answer("pre-create", answer)


async def test_a_huge_answer_is_a_failure() -> None:
    huge = {"pad": "x" * 100_000}
    with hook_receiver() as receiver:
        receiver.answer("pre-create", (200, huge, 0.0))
        webhook = Webhook(receiver.url, timeout=5)
        request = HookRequest(
            hook="pre-create",
            way="put",
            upload_id=None,
            size=1,
            offset=0,
            metadata={},
            http=HttpInfo(method="PUT", uri="/", remote_addr="", headers={}),
        )
        try:
            with pytest.raises(HookFailed):
                await webhook.deliver(request, blocking=True)
        finally:
            await webhook.aclose()


# -- tus ----------------------------------------------------------------------------------

TUS = {"Tus-Resumable": "1.0.0"}


def tus_create(client: httpx.Client, size: int, filename: str) -> str:
    encoded = base64.b64encode(filename.encode()).decode()
    response = client.post(
        "/tus/",
        headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": f"filename {encoded}"},
    )
    assert response.status_code == 201, response.text
    return response.headers["location"]


def tus_patch(client: httpx.Client, url: str, offset: int, data: bytes) -> httpx.Response:
    headers = {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }
    return client.patch(url, content=data, headers=headers)


def test_tus_upload_goes_through_the_hooks(client: httpx.Client, hooks: HookReceiver) -> None:
    data = os.urandom(600_000)
    url = tus_create(client, len(data), "movie.mp4")
    upload_id = url.rstrip("/").rpartition("/")[2]
    assert tus_patch(client, url, 0, data[:300_000]).status_code == 204
    done = tus_patch(client, url, 300_000, data[300_000:])
    assert done.status_code == 204
    file_id = done.headers["spoolup-file-id"]
    hooks.wait_for(lambda: len(hooks.of("post-finish")) == 1)
    assert hooks.deliveries[0].hook == "pre-create"
    pre_create = hooks.of("pre-create")[0].upload
    assert (pre_create["ID"], pre_create["Size"]) == (None, len(data))
    assert pre_create["MetaData"] == {"filename": "movie.mp4"}
    created = hooks.of("post-create")[0].upload
    assert (created["ID"], created["Size"], created["Way"]) == (upload_id, len(data), "tus")
    assert created["MetaData"] == {"filename": "movie.mp4"}
    offsets = [d.upload["Offset"] for d in hooks.of("post-receive")]
    assert offsets
    assert max(offsets) == len(data)
    finish = hooks.of("post-finish")[0].upload
    assert finish["ID"] == upload_id
    assert finish["Record"]["id"] == file_id
    assert finish["Record"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert finish["MetaData"]["filename"] == "movie.mp4"
    assert hooks.of("pre-finish")[0].upload["Record"]["id"] == file_id
    for delivery in hooks.deliveries:
        assert verify_signature(delivery.body, SECRET, delivery.headers[SIGNATURE_HEADER])


def test_tus_refused_pre_finish_keeps_nothing(
    server: RunningServer, client: httpx.Client, hooks: HookReceiver
) -> None:
    listed = client.get("/api/files").json()
    before = stored_objects(server)
    refusal = {"RejectUpload": True, "HTTPResponse": {"StatusCode": 422, "Body": "bad video"}}
    hooks.answer("pre-finish", (200, refusal, 0.0))
    url = tus_create(client, 5000, "bad.mp4")
    response = tus_patch(client, url, 0, b"v" * 5000)
    assert response.status_code == 422
    assert "bad video" in response.text
    assert client.get("/api/files").json() == listed
    assert client.head(url, headers=TUS).status_code in {404, 410}
    assert stored_objects(server) == before  # neither the file nor the tus upload
    assert hooks.of("post-finish") == []


def test_tus_terminate(client: httpx.Client, hooks: HookReceiver) -> None:
    url = tus_create(client, 100, "later.bin")
    assert client.delete(url, headers=TUS).status_code == 204
    hooks.wait_for(lambda: len(hooks.of("post-terminate")) == 1)
    assert hooks.of("post-terminate")[0].upload["ID"] == url.rstrip("/").rpartition("/")[2]
    assert hooks.of("post-terminate")[0].upload["Way"] == "tus"


def test_tus_refused_pre_create_stores_nothing(
    server: RunningServer, client: httpx.Client, hooks: HookReceiver
) -> None:
    before = stored_objects(server)
    rejected = tus_rejections_by_hook(client)
    refusal = {"RejectUpload": True, "HTTPResponse": {"StatusCode": 403, "Body": "quota spent"}}
    hooks.answer("pre-create", (200, refusal, 0.0))
    encoded = base64.b64encode(b"big.iso").decode()
    headers = {**TUS, "Upload-Length": "1000", "Upload-Metadata": f"filename {encoded}"}
    response = client.post("/tus/", headers=headers)
    assert response.status_code == 403
    assert "quota spent" in response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    assert stored_objects(server) == before
    assert hooks.of("post-create") == []
    # Counted by its cause, as a refused PUT or POST is (not as the 403 it became).
    assert tus_rejections_by_hook(client) == rejected + 1


def tus_rejections_by_hook(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    labels = {"way": "tus", "reason": "rejected_by_hook"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "spoolup_uploads_failed_total" and sample.labels == labels:
                return sample.value
    return 0.0


def test_tus_pre_create_adds_metadata(client: httpx.Client, hooks: HookReceiver) -> None:
    hooks.answer("pre-create", (200, {"ChangeFileInfo": {"MetaData": {"project": "x-1"}}}, 0.0))
    url = tus_create(client, 10, "a.txt")
    head = client.head(url, headers=TUS)
    pairs = dict(p.strip().split(" ") for p in head.headers["upload-metadata"].split(","))
    assert base64.b64decode(pairs["project"]) == b"x-1"
    assert tus_patch(client, url, 0, b"0123456789").status_code == 204
    hooks.wait_for(lambda: len(hooks.of("post-finish")) == 1)
    assert hooks.of("post-create")[0].upload["MetaData"] == {"filename": "a.txt", "project": "x-1"}
    assert hooks.of("post-finish")[0].upload["MetaData"]["project"] == "x-1"


def test_a_refused_tus_patch_is_not_left_in_flight(
    client: httpx.Client, hooks: HookReceiver
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    url = tus_create(client, 100, "x.bin")
    assert tus_patch(client, url, 50, b"x" * 50).status_code == 409  # the offset is 0
    families = text_string_to_metric_families(client.get("/metrics").text)
    in_flight = {
        s.labels["way"]: s.value
        for f in families
        if f.name == "spoolup_uploads_in_flight"
        for s in f.samples
    }
    assert in_flight == {"multipart": 0, "put": 0, "tus": 0}
