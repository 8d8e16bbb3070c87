"""GET /metrics over real sockets, read back with prometheus-client's own text parser."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.serving import free_port
from spoolup._io import PART_BUDGET
from spoolup._part_buffers import PROCESS_BUFFERS
from spoolup.errors import MalformedRequest
from spoolup.limits import Limits
from spoolup.server.metrics import FAILURE_REASONS, Metrics, failure_reason
from spoolup.storage import LocalStorage, ObjectNotFound
from tests.server.conftest import RunningServer

TOKEN = "metrics-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


@pytest.fixture(scope="module")
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(token=TOKEN, limits=Limits(max_body_size=1024 * 1024))


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client(TOKEN) as c:
        yield c


def test_uploads_are_counted_by_way_and_reason(client: httpx.Client) -> None:
    before = scrape(client)
    data = b"m" * 100_000
    assert client.put("/api/files/a.bin", content=data).status_code == 201
    files = [("f", ("b.txt", b"b" * 1000)), ("f", ("c.txt", b"c" * 1000))]
    assert client.post("/api/files", files=files).status_code == 201
    too_big = client.put("/api/files/huge.bin", content=b"h" * (2 * 1024 * 1024))
    assert too_big.status_code == 413
    bad = client.post("/api/files", content=b"nope", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 415
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("spoolup_uploads_started_total", way="put") == 2
    assert delta("spoolup_uploads_completed_total", way="put") == 1
    assert delta("spoolup_uploads_failed_total", way="put", reason="too_large") == 1
    assert delta("spoolup_uploads_started_total", way="multipart") == 2
    assert delta("spoolup_uploads_completed_total", way="multipart") == 1
    assert delta("spoolup_uploads_failed_total", way="multipart", reason="unsupported_type") == 1
    assert delta("spoolup_received_bytes_total", way="put") >= len(data)
    assert delta("spoolup_received_bytes_total", way="multipart") >= 2000
    assert value(after, "spoolup_uploads_in_flight", way="put") == 0
    assert value(after, "spoolup_uploads_in_flight", way="multipart") == 0
    route = {"method": "PUT", "route": "/api/files/{name}"}
    assert delta("spoolup_request_duration_seconds_count", **route, status="201") == 1
    assert delta("spoolup_request_duration_seconds_count", **route, status="413") == 1
    assert delta("spoolup_request_duration_seconds_sum", **route, status="201") > 0
    # Each stored file: a writer opened and committed.
    assert delta("spoolup_storage_operation_duration_seconds_count", operation="open_writer") >= 3
    assert delta("spoolup_storage_operation_duration_seconds_count", operation="commit") == 3


def test_labels_never_come_from_the_client(client: httpx.Client) -> None:
    client.get("/no/such/path/12345")
    client.request("PROPFIND", "/api/files")
    client.get("/api/files/" + "f" * 32)
    text = client.get("/metrics").text
    assert "PROPFIND" not in text
    assert 'method="other"' in text
    assert "12345" not in text
    assert "f" * 32 not in text
    samples = parse(text)
    assert any(
        name == "spoolup_request_duration_seconds_count" and ("route", "unmatched") in labels
        for name, labels in samples
    )


def test_the_token_guards_metrics(server: RunningServer) -> None:
    with server.client() as anonymous:
        response = anonymous.get("/metrics")
    assert response.status_code == 401


def test_metrics_port(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    port = free_port()
    server = make_server(token=TOKEN, metrics_port=port)
    with server.client(TOKEN) as client:
        assert client.put("/api/files/x.txt", content=b"x").status_code == 201
        assert client.get("/metrics").status_code == 404  # not on the main port
    response = httpx.get(f"http://127.0.0.1:{port}/metrics")  # no token there
    assert response.status_code == 200
    assert value(parse(response.text), "spoolup_uploads_completed_total", way="put") == 1
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics")  # the port is released


def test_metrics_off(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(metrics=False)
    with server.client() as client:
        assert client.put("/api/files/x.txt", content=b"x").status_code == 201
        assert client.get("/metrics").status_code == 404


def test_sweeps_and_hooks_are_counted() -> None:
    metrics = Metrics()
    metrics.sweep("tus", removed=3)
    metrics.sweep("tus", failed=True)
    metrics.hook_call("pre-create", "rejected", 0.01)
    samples = parse(metrics.render().decode())
    assert value(samples, "spoolup_sweeps_total", kind="tus", outcome="ok") == 1
    assert value(samples, "spoolup_sweeps_total", kind="tus", outcome="failed") == 1
    assert value(samples, "spoolup_swept_total", kind="tus") == 3
    assert value(samples, "spoolup_hook_calls_total", hook="pre-create", outcome="rejected") == 1
    assert value(samples, "spoolup_hook_duration_seconds_count", hook="pre-create") == 1
    assert Metrics(enabled=False).render() == b""


def test_part_buffers_are_shown_when_scraped() -> None:
    metrics = Metrics()
    held = PROCESS_BUFFERS.take(1024 * 1024)
    samples = parse(metrics.render().decode())
    assert value(samples, "spoolup_part_buffer_bytes") >= len(held)
    assert value(samples, "spoolup_part_buffer_budget_bytes") == PART_BUDGET
    PROCESS_BUFFERS.give_back(held)


def test_the_part_budget_is_the_operators(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(part_budget=16 * 1024 * 1024)
    try:
        with server.client() as client:
            samples = parse(client.get("/metrics").text)
        assert value(samples, "spoolup_part_buffer_budget_bytes") == 16 * 1024 * 1024
        assert (PROCESS_BUFFERS.budget, PROCESS_BUFFERS.idle) == (16 * 1024**2, 4 * 1024**2)
    finally:
        PROCESS_BUFFERS.set_budget(PART_BUDGET)


def test_storage_errors_are_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    storage = metrics.instrument_storage(LocalStorage(tmp_path))
    assert isinstance(storage, LocalStorage)
    assert metrics.instrument_storage(storage) is storage  # once only
    storage.write("a", [b"abc"])
    with pytest.raises(ObjectNotFound):
        storage.stat("missing")
    samples = parse(metrics.render().decode())
    count = "spoolup_storage_operation_duration_seconds_count"
    assert value(samples, count, operation="stat") == 1
    assert value(samples, count, operation="commit") == 1
    assert value(samples, "spoolup_storage_errors_total", operation="stat") == 1
    assert value(samples, "spoolup_storage_errors_total", operation="commit") == 0


def test_failure_reasons_are_a_fixed_list() -> None:
    assert failure_reason(MalformedRequest("x")) == "bad_request"
    assert failure_reason(RuntimeError()) == "internal"
    assert {failure_reason(MalformedRequest("x")), failure_reason(RuntimeError())} <= set(
        FAILURE_REASONS
    )


def test_tus_uploads_are_counted(client: httpx.Client) -> None:
    tus = {"Tus-Resumable": "1.0.0"}
    before = scrape(client)
    created = client.post("/tus/", headers={**tus, "Upload-Length": "1000"})
    assert created.status_code == 201
    patch = {**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    assert client.patch(created.headers["location"], content=b"t" * 1000, headers=patch).is_success
    refused = client.post("/tus/", headers={**tus, "Upload-Length": str(100 * 1024**4)})
    assert refused.status_code == 413
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("spoolup_uploads_started_total", way="tus") == 1
    assert delta("spoolup_uploads_completed_total", way="tus") == 1
    assert delta("spoolup_uploads_failed_total", way="tus", reason="too_large") == 1
    assert delta("spoolup_received_bytes_total", way="tus") == 1000
    assert value(after, "spoolup_uploads_in_flight", way="tus") == 0
    assert (
        delta("spoolup_request_duration_seconds_count", method="PATCH", route="/tus", status="204")
        == 1
    )


def test_tus_sweeps_are_counted(make_server: Callable[..., RunningServer]) -> None:
    server = make_server()
    with server.client() as client:
        client.options("/tus/")  # the first request starts the sweeper
        deadline = time.monotonic() + 20
        while True:
            samples = scrape(client)
            if value(samples, "spoolup_sweeps_total", kind="tus", outcome="ok") >= 1:
                break
            assert time.monotonic() < deadline, "no tus sweep counted"
            time.sleep(0.05)
