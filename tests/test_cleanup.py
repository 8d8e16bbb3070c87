"""Temp files: created in TMPDIR with the spoolup prefix, removed whatever happens."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from spoolup._cleanup import TEMP_PREFIX, SpoolFile


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def is_removed(spool: SpoolFile) -> bool:
    return spool.removed


def test_created_in_tempdir_with_prefix_and_removed_on_close(tmp: Path) -> None:
    spool = SpoolFile()
    assert spool.path.parent == tmp
    assert spool.path.name.startswith(TEMP_PREFIX)
    spool.file.write(b"x")
    assert not spool.removed
    spool.close()
    assert is_removed(spool)
    assert spool.file.closed
    assert list(tmp.iterdir()) == []
    spool.close()  # idempotent


def test_removed_when_garbage_collected(tmp: Path) -> None:
    spool = SpoolFile()
    spool.file.write(b"x")
    del spool
    gc.collect()
    assert list(tmp.iterdir()) == []


def test_keep_hands_the_file_over(tmp: Path, tmp_path: Path) -> None:
    spool = SpoolFile()
    spool.file.write(b"kept")
    spool.file.flush()
    dest = tmp_path / "dest"
    spool.path.replace(dest)
    spool.keep(dest)
    assert spool.removed
    spool.close()
    assert spool.file.closed
    assert dest.read_bytes() == b"kept"


def test_explicit_dir(tmp_path: Path) -> None:
    spool = SpoolFile(dir=tmp_path)
    assert spool.path.parent == tmp_path
    spool.close()


SCRIPT = """
import sys
import spoolup
body = (
    b"--B\\r\\nContent-Disposition: form-data; name=\\"f\\"; filename=\\"a.bin\\"\\r\\n\\r\\n"
    + b"x" * 3_000_000 + b"\\r\\n--B--\\r\\n"
)
form = spoolup.parse_form(body, "multipart/form-data; boundary=B")
assert form.files["f"].path is not None
KEEP = [form]  # alive until the interpreter exits, never closed
print(form.files["f"].path)
if sys.argv[1] == "exit":
    sys.exit(3)
"""


@pytest.mark.parametrize("how", ["end", "exit"])
def test_forms_never_closed_are_cleaned_at_exit(tmp_path: Path, how: str) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), how],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == (3 if how == "exit" else 0), result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == tmp_path
    assert path.name.startswith(TEMP_PREFIX)
    assert list(tmp_path.iterdir()) == []
