"""spoolup serve caps the unfinished tus uploads of one client (--tus-max-open-per-client)."""

from __future__ import annotations

from collections.abc import Callable

from tests.server.conftest import RunningServer


def test_the_server_caps_one_clients_open_tus_uploads(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(tus_max_open_per_client=1)
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "5"}
    with server.client() as client:
        first = client.post("/tus/", headers={**headers, "X-Forwarded-For": "10.0.0.1"})
        again = client.post("/tus/", headers={**headers, "X-Forwarded-For": "10.0.0.1"})
        other = client.post("/tus/", headers={**headers, "X-Forwarded-For": "10.0.0.2"})
    assert first.status_code == 201
    assert again.status_code == 429
    assert "from this client (1)" in again.json()["error"]
    assert other.status_code == 201


def test_made_up_bearer_tokens_do_not_dodge_the_per_client_cap(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(tus_max_open_per_client=1)  # no --token: nothing checks one
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "5", "X-Forwarded-For": "10.0.0.3"}
    with server.client() as client:
        answers = [
            client.post("/tus/", headers={**headers, "Authorization": f"Bearer fake-{n}"})
            for n in range(3)
        ]
    assert [a.status_code for a in answers] == [201, 429, 429]


def test_clients_sharing_the_servers_token_are_not_one_client(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(tus_max_open_per_client=1, token="the-one-token")
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "5"}
    with server.client(token="the-one-token") as client:
        first = client.post("/tus/", headers={**headers, "X-Forwarded-For": "10.0.0.4"})
        other = client.post("/tus/", headers={**headers, "X-Forwarded-For": "10.0.0.5"})
    assert (first.status_code, other.status_code) == (201, 201)
