"""A webhook receiver on 127.0.0.1 for the hook tests: records each hook, answers as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    """One hook request as the receiver got it."""

    hook: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def upload(self) -> Any:
        return self.json["Event"]["Upload"]


# An answer: (status, JSON-able body or None for an empty body, seconds to wait first).
Answer = tuple[int, Any, float]


@dataclass
class HookReceiver:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    # hook name -> answers to give, in turn (the last one is repeated)
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, hook: str, *answers: Answer) -> None:
        self.answers[hook] = list(answers)

    def of(self, hook: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.hook == hook]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"hooks seen: {[d.hook for d in self.deliveries]}"
            time.sleep(0.02)

    def reset(self) -> None:
        with self.lock:
            self.deliveries.clear()
            self.answers.clear()


@contextmanager
def hook_receiver() -> Iterator[HookReceiver]:
    """Run a receiver on a free port of 127.0.0.1 until the block ends."""
    receiver: HookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook = self.headers.get("X-Spoolup-Hook", "")
            with receiver.lock:
                receiver.deliveries.append(Delivery(hook, dict(self.headers.items()), body))
                queue = receiver.answers.get(hook) or [(200, None, 0.0)]
                status, answer, delay = queue.pop(0) if len(queue) > 1 else queue[0]
            if delay:
                time.sleep(delay)
            payload = b"" if answer is None else json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the server gave up waiting

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = HookReceiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
