"""HAProxy from Debian in front of ``spoolup serve`` processes, with the documented config.

The config is ``deploy/haproxy.cfg`` as shipped: its addresses come from environment
variables; for fewer than three servers the unused ``server`` lines are left out, and
a test may add lines to the backend (``extra``). ``make cluster-tools`` installs
HAProxy; without it the tests skip, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from tests.seaweed import free_ports

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str:
    """The ``haproxy`` binary, or a skip saying how to install it."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.skip("HAProxy is not installed (make cluster-tools installs Debian's haproxy)")
    return found


def render(backends: Sequence[str], extra: Sequence[str] = ()) -> str:
    """``deploy/haproxy.cfg`` for ``len(backends)`` servers, with ``extra`` backend lines."""
    lines = []
    for line in CONFIG.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("server spoolup"):
            number = int(stripped.split()[1].removeprefix("spoolup"))
            if number > len(backends):
                continue
        lines.append(line)
        if stripped == "balance roundrobin":
            lines.extend(f"    {x}" for x in extra)
    return "\n".join(lines) + "\n"


class Balancer:
    """One HAProxy process on a free port of 127.0.0.1; ``url`` is its base URL."""

    def __init__(self, folder: Path, backends: Sequence[str], *, extra: Sequence[str] = ()) -> None:
        binary = haproxy_binary()
        folder.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "haproxy.cfg"
        config.write_text(render(backends, extra))
        env = {**os.environ, "SPOOLUP_LB_BIND": f"127.0.0.1:{self.port}"}
        for i, backend in enumerate(backends, 1):
            env[f"SPOOLUP_{i}"] = backend.removeprefix("http://")
        self.log = folder / "haproxy.out"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [binary, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                msg = f"haproxy exited:\n{self.log.read_text(errors='replace')}"
                raise RuntimeError(msg)
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"haproxy did not pass requests:\n{self.log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Terminate HAProxy (by its PID), kill it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
