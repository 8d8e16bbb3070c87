"""The per-client cap on unfinished tus uploads, over real sockets (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import concurrent.futures
import threading

import httpx
import pytest

from spoolup.tus.protocol import TusError
from spoolup.tus.quota import CLIENT, OpenUploads, client_key
from tests.tus.conftest import Env, Server

OCT = {"Content-Type": "application/offset+octet-stream"}


def _create(client: httpx.Client, server: Server, **headers: str) -> httpx.Response:
    return client.post(server.url, headers={"Upload-Length": "2", **headers})


def _from(address: str) -> dict[str, str]:
    # uvicorn believes X-Forwarded-For from a proxy on loopback (FORWARDED_ALLOW_IPS).
    return {"X-Forwarded-For": address}


def test_one_client_cannot_take_every_open_upload(env: Env, client: httpx.Client) -> None:
    server = env.start(max_open_uploads=100, max_open_per_client=2)
    a = [_create(client, server, **_from("10.0.0.1")) for _ in range(2)]
    assert [r.status_code for r in a] == [201, 201]
    refused = _create(client, server, **_from("10.0.0.1"))
    assert refused.status_code == 429
    assert "too many unfinished uploads from this client (2)" in refused.json()["error"]
    # Other clients are not held back.
    assert _create(client, server, **_from("10.0.0.2")).status_code == 201
    # A bearer token nothing checked names no one: a new one per upload dodges nothing.
    for n in range(2):
        token = {"Authorization": f"Bearer made-up-{n}", **_from("10.0.0.1")}
        assert _create(client, server, **token).status_code == 429
    # Finishing one of its uploads gives the client room again.
    url = server.base + a[0].headers["location"]
    finished = client.patch(url, content=b"ab", headers={**OCT, "Upload-Offset": "0"})
    assert finished.status_code == 204
    assert _create(client, server, **_from("10.0.0.1")).status_code == 201
    assert _create(client, server, **_from("10.0.0.1")).status_code == 429


def test_the_per_client_count_survives_a_restart(env: Env, client: httpx.Client) -> None:
    first = env.start(max_open_per_client=2)
    for _ in range(2):
        assert _create(client, first, **_from("10.0.0.9")).status_code == 201
    second = env.start(max_open_per_client=2)  # counts what it finds in storage
    assert _create(client, second, **_from("10.0.0.9")).status_code == 429
    assert _create(client, second, **_from("10.0.0.8")).status_code == 201


def test_client_keys() -> None:
    def key(host: str, **scope: str) -> str:
        return client_key({"client": (host, 1234), "headers": [], **scope})

    assert key("10.1.2.3") == "ip:10.1.2.3"
    # One machine's IPv6 addresses share a /64; an IPv4-mapped one is its IPv4 address.
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") == "ip:2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:10.1.2.3") == "ip:10.1.2.3"
    # Link-local addresses all share fe80::/64 (on every link): each counts on its own.
    assert key("fe80::1%eth0") != key("fe80::2%eth0")
    # A client an authentication layer named is that name (hashed) from any address.
    named = key("10.1.2.3", **{CLIENT: "alice"})
    assert named.startswith("named:")
    assert "alice" not in named
    assert named == key("10.9.9.9", **{CLIENT: "alice"}) != key("10.1.2.3", **{CLIENT: "bob"})
    assert client_key({}) == ""


def test_creations_at_once_do_not_overshoot_the_per_client_cap(env: Env) -> None:
    # Each creation is admitted and then recorded in a worker thread: the ones that
    # arrive together must not all pass before any of them counts.
    server = env.start(max_open_uploads=1000, max_open_per_client=3)
    barrier = threading.Barrier(24)

    def create() -> int:
        with httpx.Client(timeout=60, headers={"Tus-Resumable": "1.0.0"}) as own:
            barrier.wait()
            return _create(own, server, **_from("10.0.0.7")).status_code

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(lambda _: create(), range(24)))
    assert sorted(statuses).count(201) == 3, statuses
    assert statuses.count(429) == 21


def test_a_listing_counts_what_changed_while_it_was_taken() -> None:
    counts = OpenUploads(max_open=100, max_per_client=1)
    counts.listing()  # the sweep's listing begins: nothing stored yet
    counts.opened("new", "ip:10.0.0.1")  # a creation, not yet in storage
    counts.recount([])
    with pytest.raises(TusError) as refused:
        counts.admit("ip:10.0.0.1")
    assert refused.value.status == 429
    counts.recorded("new")
    counts.listing()  # the next listing began before the upload finished
    counts.closed("new")
    counts.recount([("new", "ip:10.0.0.1")])  # it saw the upload still open
    counts.admit("ip:10.0.0.1")
    assert len(counts) == 0
