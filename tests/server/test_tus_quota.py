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
