"""``spoolup`` with the core package alone: help works, the rest says which extra to install."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import spoolup
from spoolup.cli import EXTRA_OF_MODULE

ROOT = Path(__file__).resolve().parents[2]


def _name(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with this checkout's spoolup and none of the optional packages."""
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "spoolup-checkout.pth").write_text(f"{Path(spoolup.__file__).parents[1]}\n")
    missing = subprocess.run([python, "-c", "import httpx"], capture_output=True, check=False)
    assert missing.returncode != 0  # the premise: no extras here
    return python


def _spoolup(python: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "spoolup.cli", *argv], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["upload", "--help"]])
def test_help_works_without_the_extras(core_python: Path, argv: list[str]) -> None:
    done = _spoolup(core_python, *argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: spoolup")
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["serve", "--port", "0"], "uvicorn"),
        (["ls"], "httpx"),
        (["get", "report.pdf"], "httpx"),
        (["rm", "report.pdf"], "httpx"),
        (["share", "report.pdf"], "httpx"),
        (["upload", "report.pdf"], None),
    ],
)
def test_commands_say_which_extra_to_install(
    core_python: Path, argv: list[str], module: str | None
) -> None:
    done = _spoolup(core_python, *argv)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()  # one line
    assert line.startswith(f"spoolup {argv[0]}: needs ")
    assert line.endswith("pip install 'spoolup[server]'")
    if module is not None:
        assert f"needs the {module} package" in line


def test_every_optional_package_is_named() -> None:
    # Each package of the extras the commands use maps its import names to its extra.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    modules: dict[str, set[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        for distribution in distributions:
            modules.setdefault(_name(distribution), set()).add(module)
    for extra in ("server", "s3", "redis"):
        for requirement in extras[extra]:
            distribution = _name(re.split(r"[\[<>=~!; ]", requirement, maxsplit=1)[0])
            if distribution == "spoolup":
                continue
            for module in modules[distribution]:
                assert EXTRA_OF_MODULE.get(module) == extra, (distribution, module)


def test_s3_storage_without_boto3_names_the_s3_extra(tmp_path: Path) -> None:
    # The server's packages are here, boto3 is not (None in sys.modules: its import fails).
    code = (
        "import sys; sys.modules['boto3'] = None; from spoolup.cli import main; "
        "sys.exit(main(['serve', '--port', '0', '--storage', 's3://uploads/team']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr == "spoolup serve: needs the boto3 package: pip install 'spoolup[s3]'\n"
