"""Load a benchmark app in the server process, wrapped to count the body bytes it reads.

``$BENCH_APP`` names the factory (``benchmarks.frameworks.flask_app:native_app``).
uvicorn serves ``benchmarks.frameworks.serve:asgi`` (``--factory``), gunicorn
``benchmarks.frameworks.serve:wsgi()``. Each answer's status and the body bytes the app had read
when it answered (what "refused before reading" means) are written as a line
``<status> <bytes>`` to the pipe ``$BENCH_LOG_FD`` before the answer is sent (a pipe: a
file, even on tmpfs, would count as the app's disk bytes). A client cut off while still
sending (a server closing after an early 413) may never read the answer; the pipe has it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _record(status: int, read: int) -> None:
    os.write(int(os.environ["BENCH_LOG_FD"]), f"{status} {read}\n".encode())


def _load() -> Any:
    module, _, factory = os.environ["BENCH_APP"].partition(":")
    return getattr(importlib.import_module(module), factory)()


def asgi() -> Any:
    """The ASGI app of ``$BENCH_APP``, counting what it receives."""
    app = _load()

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        read = 0

        async def counting_receive() -> Any:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            return message

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                _record(message["status"], read)
            await send(message)

        await app(scope, counting_receive, counting_send)

    return counted


class _CountingInput:
    """``wsgi.input`` that counts the bytes read from it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.read_bytes = 0

    def _count(self, data: bytes) -> bytes:
        self.read_bytes += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._count(self._stream.read(size))

    def readline(self, size: int | None = -1) -> bytes:
        return self._count(self._stream.readline(size))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return [self._count(line) for line in self._stream.readlines(hint)]

    def __iter__(self) -> Iterator[bytes]:
        return (self._count(line) for line in self._stream)


def wsgi() -> Any:
    """The WSGI app of ``$BENCH_APP``, counting what it reads from ``wsgi.input``."""
    app = _load()

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        stream = environ["wsgi.input"] = _CountingInput(environ["wsgi.input"])

        def counting_start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            _record(int(status.split(maxsplit=1)[0]), stream.read_bytes)
            return start_response(status, headers, *rest)

        result: Iterable[bytes] = app(environ, counting_start)
        return result

    return counted
