"""Share links and upload links over real sockets: signed, expiring, need no token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from spoolup.server.config import ServerConfig
from spoolup.server.share import LinkError, LinkSigner, UploadLink, sweep_link_markers
from spoolup.server.sweep import LeftoverSweeper
from spoolup.storage import LocalStorage
from tests.server.conftest import RunningServer

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(token=TOKEN, share_ttl=3600)


def test_signer_refuses_tampering_expiry_and_another_secret() -> None:
    signer = LinkSigner(b"k" * 32)
    text = signer.share("a" * 32, expires=2_000)
    assert signer.check_share(text, now=1_999) == "a" * 32
    with pytest.raises(LinkError) as expired:
        signer.check_share(text, now=2_001)
    assert expired.value.status == 410
    assert "expired" in expired.value.message
    file_id, expires, sig = text.split(".")
    for forged in [f"{'b' * 32}.{expires}.{sig}", f"{file_id}.9999999999.{sig}", text + "x", "x"]:
        with pytest.raises(LinkError) as refused:
            signer.check_share(forged, now=0)
        assert refused.value.status == 403
    with pytest.raises(LinkError):
        LinkSigner(b"o" * 32).check_share(text, now=0)
    upload = signer.upload(UploadLink("n" * 24, 2_000, 10, 2))
    with pytest.raises(LinkError):  # an upload link is not a share link
        signer.check_share(upload, now=0)
    assert signer.check_upload(upload, now=0) == UploadLink("n" * 24, 2_000, 10, 2)


def test_servers_with_the_same_secret_share_links() -> None:
    one = ServerConfig(token="t1", share_secret="x" * 16)
    two = ServerConfig(token="t2", share_secret="x" * 16)
    three = ServerConfig(token="t1", share_secret="y" * 16)
    a, b, c = (LinkSigner.from_config(config) for config in (one, two, three))
    assert a is not None
    assert b is not None
    assert c is not None
    text = a.share("a" * 32, expires=10)
    assert b.check_share(text, now=0) == "a" * 32
    with pytest.raises(LinkError):
        c.check_share(text, now=0)  # rotating the secret revokes
    assert LinkSigner.from_config(ServerConfig()) is None


def test_share_link_downloads_without_token_until_it_expires(guarded: RunningServer) -> None:
    with guarded.client(TOKEN) as client:
        record = client.put("/api/files/notes.txt", content=b"hello share").json()
        made = client.post(f"/api/files/{record['id']}/share", json={"ttl": 3})
    assert made.status_code == 201, made.text
    url = made.json()["url"]
    assert url.startswith(f"{guarded.url}/s/")
    with httpx.Client(timeout=10) as anonymous:
        got = anonymous.get(url)
        assert got.status_code == 200
        assert got.content == b"hello share"
        assert "notes.txt" in got.headers["content-disposition"]
        assert anonymous.get(url, headers={"Range": "bytes=6-"}).content == b"share"
        assert anonymous.get(f"{guarded.url}/api/files/{record['id']}").status_code == 401
        deadline = time.monotonic() + 30
        while (expired := anonymous.get(url)).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert expired.status_code == 410
    assert "expired" in expired.json()["error"]


def test_share_requests_are_checked(guarded: RunningServer) -> None:
    with guarded.client(TOKEN) as client:
        record = client.put("/api/files/a.txt", content=b"a").json()
        share = f"/api/files/{record['id']}/share"
        assert client.post(f"/api/files/{'0' * 32}/share").status_code == 404
        assert client.post(share, json={"ttl": 999_999}).status_code == 400
        assert client.post(share, content=b"[1]").status_code == 400
        assert client.post(share, content=b"{" * 5000).status_code == 400
        for bad in [b'{"max_files": Infinity}', b'{"max_files": 1.5}', b'{"ttl": NaN}']:
            refused = client.post("/api/upload-links", content=bad)
            assert refused.status_code == 400, (bad, refused.text)
        made = client.post(share)  # no body: the server's --share-ttl
        assert made.status_code == 201
    with httpx.Client(base_url=guarded.url) as anonymous:
        assert anonymous.post(share).status_code == 401


def test_no_token_means_no_links(make_server: Callable[..., RunningServer]) -> None:
    open_server = make_server()
    with open_server.client() as client:
        record = client.put("/api/files/a.txt", content=b"a").json()
        response = client.post(f"/api/files/{record['id']}/share")
        assert response.status_code == 409
        assert "already open" in response.json()["error"]
        assert client.get("/api/limits").json()["links"] is False


def test_upload_link_takes_capped_files_and_shows_nothing(guarded: RunningServer) -> None:
    with guarded.client(TOKEN) as client:
        made = client.post("/api/upload-links", json={"max_size": 100, "max_files": 2}).json()
        before = client.get("/api/files").headers["spoolup-total-count"]
    link = made["url"]
    assert (made["max_size"], made["max_files"]) == (100, 2)
    with httpx.Client(timeout=10) as anonymous:
        page = anonymous.get(link)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        limits = anonymous.get(f"{link}/limits").json()
        assert (limits["max_file_size"], limits["files_left"]) == (100, 2)
        too_big = anonymous.post(f"{link}/files", files={"file": ("big.bin", b"x" * 101)})
        assert too_big.status_code == 413
        sent = anonymous.post(f"{link}/files", files={"file": ("one.txt", b"1")})
        assert sent.status_code == 201, sent.text
        assert sent.json() == [
            {
                "filename": "one.txt",
                "size": 1,
                "sha256": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
            }
        ]
        two = anonymous.post(
            f"{link}/files", files=[("file", ("2.txt", b"2")), ("file", ("3.txt", b"3"))]
        )
        assert two.status_code == 413  # one file left
        assert anonymous.post(f"{link}/files", files={"file": ("2.txt", b"2")}).status_code == 201
        full = anonymous.post(f"{link}/files", files={"file": ("4.txt", b"4")})
        assert full.status_code == 410
        assert "all the 2 files" in full.json()["error"]
        forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        assert anonymous.post(f"{forged}/files", files={"file": ("x", b"x")}).status_code == 403
        assert anonymous.get(f"{guarded.url}/api/files").status_code == 401
    with guarded.client(TOKEN) as client:
        after = client.get("/api/files").headers["spoolup-total-count"]
    assert int(after) == int(before) + 2


def test_limits_tell_what_the_server_takes(guarded: RunningServer) -> None:
    with guarded.client(TOKEN) as client:
        limits = client.get("/api/limits").json()
    assert limits["max_file_size"] == guarded.config.limits.max_file_size
    assert limits["inspect_max_size"] == guarded.config.inspect_max_size
    assert limits["links"] is True


def test_concurrent_uploads_never_exceed_the_link_file_count(guarded: RunningServer) -> None:
    """Requests that all start while the link has room: at most ``max_files`` are kept."""
    with guarded.client(TOKEN) as client:
        link = client.post("/api/upload-links", json={"max_files": 1}).json()["url"]
        before = int(client.get("/api/files").headers["spoolup-total-count"])
    boundary = "race"
    release = asyncio.Event()

    async def body(n: int) -> AsyncIterator[bytes]:
        yield f"--{boundary}\r\n".encode()
        await release.wait()  # every request has passed the count check by now
        yield (
            f'Content-Disposition: form-data; name="file"; filename="r{n}.txt"\r\n\r\n'
            f"{n}\r\n--{boundary}--\r\n"
        ).encode()

    async def race() -> list[httpx.Response]:
        headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
        async with httpx.AsyncClient(timeout=30) as anonymous:
            sends = [
                asyncio.create_task(
                    anonymous.post(f"{link}/files", content=body(n), headers=headers)
                )
                for n in range(4)
            ]
            await asyncio.sleep(1)
            release.set()
            return await asyncio.gather(*sends)

    answers = asyncio.run(race())
    kept = [a for a in answers if a.status_code == 201]
    assert len(kept) <= 1, [a.text for a in answers]
    assert all(a.status_code in {201, 409, 410} for a in answers), [a.text for a in answers]
    with guarded.client(TOKEN) as client:
        after = int(client.get("/api/files").headers["spoolup-total-count"])
    assert after == before + len(kept)


def test_the_sweep_removes_the_markers_of_expired_upload_links(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for key in [
        "links/1000.expired/" + "a" * 32,
        "links/1000.expired/" + "b" * 32,
        "links/9999999999.live/" + "c" * 32,
        "links/no-expiry/" + "d" * 32,  # not a marker this server writes: left alone
    ]:
        storage.write(key, b"")
    sweeper = LeftoverSweeper(storage, tus=None, orphan_age=3600.0, interval=300.0)
    assert sweeper.sweep() == 2
    left = sorted(item.key for item in storage.list("links/").items)
    assert left == ["links/9999999999.live/" + "c" * 32, "links/no-expiry/" + "d" * 32]
    assert sweep_link_markers(storage, now=time.time()) == 0


def test_an_upload_link_marks_its_files_under_its_expiry(guarded: RunningServer) -> None:
    with guarded.client(TOKEN) as client:
        made = client.post("/api/upload-links", json={"max_files": 1}).json()
    link = made["url"]
    nonce, expires = link.rsplit("/", 1)[1].split(".")[:2]
    with httpx.Client(timeout=10) as anonymous:
        sent = anonymous.post(f"{link}/files", files={"file": ("m.txt", b"m")})
        assert sent.status_code == 201, sent.text
    storage = LocalStorage(guarded.storage)
    marks = storage.list(f"links/{expires}.{nonce}/").items
    assert len(marks) == 1
    assert sweep_link_markers(storage, now=int(expires) + 1) >= 1
    assert storage.list(f"links/{expires}.{nonce}/").items == []
