"""The body stream of spoolup's ASGI handler: batches, read-ahead, the loop, disconnects."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.core.exceptions import RequestAborted
from django.http import UnreadablePostError
from django.test import override_settings

from spoolup.integrations.django.asgi import BATCH_SIZE, StreamingBody
from tests.integrations.django.conftest import MEDIA, TEMP, files_under
from tests.integrations.django.helpers import multipart


def _receiver(messages: list[dict[str, Any]]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


def _body_messages(data: bytes, size: int) -> list[dict[str, Any]]:
    pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]


async def test_reads_in_a_thread_see_every_byte_in_order() -> None:
    data = bytes(range(256)) * (3 * BATCH_SIZE // 256 + 77)
    body = StreamingBody(_receiver(_body_messages(data, 65536)), asyncio.get_running_loop())

    def consume() -> tuple[bytes, bytes, bytes]:
        first = body.read(10)
        line = body.readline()
        return first, line, body.read(-1)

    first, line, rest = await asyncio.to_thread(consume)
    assert first + line + rest == data
    assert line.endswith(b"\n")
    assert body.read(5) == b""
    await asyncio.wait_for(body.received(), 5)


async def test_short_reads_never_end_early() -> None:
    data = b"x" * (2 * BATCH_SIZE + 5)
    body = StreamingBody(_receiver(_body_messages(data, 1000)), asyncio.get_running_loop())

    def consume() -> int:
        total = 0
        while chunk := body.read(BATCH_SIZE // 3):
            total += len(chunk)
        return total

    assert await asyncio.to_thread(consume) == len(data)


async def test_reading_on_the_event_loop_is_a_clear_error() -> None:
    body = StreamingBody(_receiver(_body_messages(b"abc", 10)), asyncio.get_running_loop())
    with pytest.raises(RuntimeError, match=r"cannot be read on the event loop.*UploadMiddleware"):
        body.read()
    body.close()


async def test_a_client_leaving_is_unreadable_post() -> None:
    messages = _body_messages(b"y" * 3000, 1000)[:2]  # and then a disconnect
    body = StreamingBody(_receiver(messages), asyncio.get_running_loop())
    with pytest.raises(UnreadablePostError):
        await asyncio.to_thread(body.read, -1)


async def test_spool_reads_the_rest_for_an_async_view() -> None:
    data = b"z" * (BATCH_SIZE + 100)
    body = StreamingBody(_receiver(_body_messages(data, 4096)), asyncio.get_running_loop())
    await body.spool()
    assert body.read(3) == b"zzz"  # on the loop: it is all here now
    assert body.readline() == data[3:]
    body.close()
    body = StreamingBody(_receiver(_body_messages(data, 4096)[:3]), asyncio.get_running_loop())
    with pytest.raises(RequestAborted):
        await body.spool()


@pytest.fixture
async def asgi() -> AsyncIterator[tuple[Any, str]]:
    """An httpx client of spoolup's ASGI handler, with a CSRF token."""
    import httpx

    from spoolup.integrations.django import get_asgi_application

    transport = httpx.ASGITransport(app=get_asgi_application())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client, (await client.get("/csrf/")).text


async def _post_file(client: Any, token: str, path: str, data: bytes) -> Any:
    body, content_type = multipart({}, {"backup": ("b.bin", data, "application/octet-stream")})
    headers = {"Content-Type": content_type, "X-CSRFToken": token, "Accept": "application/json"}
    return await client.post(path, content=body, headers=headers)


@pytest.mark.parametrize("path", ["/backup/", "/async-backup/"])
async def test_handler_streams_to_sync_and_async_views(asgi: tuple[Any, str], path: str) -> None:
    data = os.urandom(3 * BATCH_SIZE + 7)
    response = await _post_file(*asgi, path, data)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert (MEDIA / answer["name"]).read_bytes() == data
    assert files_under(TEMP) == []


async def test_refusal_before_an_async_view_is_answered_with_its_status(
    asgi: tuple[Any, str],
) -> None:
    with override_settings(SPOOLUP={"LIMITS": {"max_file_size": 10}}):
        response = await _post_file(*asgi, "/async-backup/", b"x" * 100)
    assert response.status_code == 413, response.text
    assert "max_file_size=10" in response.json()["error"]
    assert files_under(MEDIA) == []


async def test_async_view_reads_a_spooled_json_body(asgi: tuple[Any, str]) -> None:
    client, token = asgi
    response = await client.post(
        "/async-body/",
        content=b'{"a": 1}',
        headers={"Content-Type": "application/json", "X-CSRFToken": token},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"length": 8}
