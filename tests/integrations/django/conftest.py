"""The Django test project, set up once per session; its servers, started by the tests.

Django's settings are process-wide: this configures them from
``tests/integrations/django/project/settings.py`` as soon as the folder is collected,
with every file the project writes under one temp folder (removed at the end).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.serving import free_port, stop, wait_for_port

_BASE = Path(tempfile.mkdtemp(prefix="spoolup-django-"))
atexit.register(shutil.rmtree, _BASE, ignore_errors=True)  # even if no test here ran
os.environ["SPOOLUP_DJANGO_DIR"] = str(_BASE)
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.integrations.django.project.settings"

import django  # noqa: E402 - after the settings module is named

django.setup()

ROOT = Path(__file__).resolve().parents[3]
MEDIA = _BASE / "media"
TEMP = _BASE / "tmp"


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (dot-named temp files included)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture(scope="session", autouse=True)
def project() -> Path:
    """The project's database, made once (the folder is removed at exit)."""
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    return _BASE


@pytest.fixture(autouse=True)
def empty_folders() -> None:
    """MEDIA_ROOT and FILE_UPLOAD_TEMP_DIR start empty for each test."""
    for folder in (MEDIA, TEMP):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)


@dataclass
class Server:
    """A server running the project on 127.0.0.1."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def worker_pid(self) -> int:
        """The process that runs the views (gunicorn's worker, uvicorn itself)."""
        import psutil

        children = psutil.Process(self.process.pid).children()
        return children[0].pid if children else self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            stop(self.process)


def start_server(kind: str, env: dict[str, str] | None = None) -> Server:
    """``gunicorn`` (WSGI, the project's wsgi.py) or ``uvicorn`` (spoolup's ASGI handler)."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    if kind == "gunicorn":
        command = [
            str(bin_dir / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--timeout",
            "300",
            "tests.integrations.django.project.wsgi:application",
        ]
    else:
        module = "native_asgi" if kind == "uvicorn-native" else "asgi"
        command = [
            str(bin_dir / "uvicorn"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            f"tests.integrations.django.project.{module}:application",
        ]
    log = _BASE / f"{kind}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(f"http://127.0.0.1:{port}", port, process, log)
    try:
        wait_for_port(port, process)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{kind}: {exc}:\n{server.output()}") from exc
    return server
