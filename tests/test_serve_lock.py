"""The runtime lock `make serve` installs: what serving needs, pinned as the tests run it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", re.MULTILINE)


def pins(path: Path) -> dict[str, str]:
    text = path.read_text()
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(text)}


def requirement_name(spec: str) -> str:
    return re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_serve_lock_has_the_server_and_s3_extras_and_no_dev_tools() -> None:
    serve = pins(ROOT / "requirements" / "serve.lock")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    wanted = {
        requirement_name(spec)
        for extra in ("server", "s3", "detect")
        for spec in extras[extra]
        if not spec.startswith("spoolup")
    }
    assert wanted <= serve.keys(), wanted - serve.keys()
    for tool in ["pytest", "mypy", "ruff", "django", "litestar", "playwright", "hypothesis"]:
        assert tool not in serve


def test_serve_lock_pins_what_the_dev_lock_pins() -> None:
    serve = pins(ROOT / "requirements" / "serve.lock")
    dev = pins(ROOT / "requirements" / "dev.lock")
    differ = {
        name: (version, dev.get(name))
        for name, version in serve.items()
        if dev.get(name) != version
    }
    assert differ == {}, "run `make lock`: " + repr(differ)
