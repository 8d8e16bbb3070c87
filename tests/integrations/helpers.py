"""A multipart body shared by the framework integration tests, and README.md's examples."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

BOUNDARY = "spoolupIntegrationBoundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
BIG = os.urandom(3 * 1024 * 1024)  # past the default memory threshold: a temp file
SMALL = b"tiny file\r\n--not a boundary"
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_code(heading: str) -> list[str]:
    """The Python blocks of README.md under ``heading`` (its whole ``## ...`` line), in order.

    The section ends at the next heading of the same level or above.
    """
    text = README.read_text(encoding="utf-8")
    level = heading.partition(" ")[0]
    section = text.split(f"\n{heading}\n", 1)[1]
    section = re.split(rf"\n#{{2,{len(level)}}} ", section, maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def body() -> bytes:
    """A form with a text field, a small file and a large one."""
    parts = [
        b'Content-Disposition: form-data; name="title"\r\n\r\nholiday',
        b'Content-Disposition: form-data; name="doc"; filename="../notes.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + SMALL,
        b'Content-Disposition: form-data; name="doc"; filename="big.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + BIG,
    ]
    delimiter = b"--" + BOUNDARY.encode()
    out = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
    return out + delimiter + b"--\r\n"


def summary(form: object) -> dict[str, object]:
    """What a view answers: the fields and, per file, its name, size, digest, place."""
    from spoolup import Form

    assert isinstance(form, Form)
    files = form.files.getlist("doc")
    return {
        "title": form.fields["title"],
        "files": [
            [f.filename, f.size, hashlib.sha256(f.read()).hexdigest(), f.in_memory] for f in files
        ],
    }


EXPECTED = {
    "title": "holiday",
    "files": [
        ["notes.txt", len(SMALL), hashlib.sha256(SMALL).hexdigest(), True],
        ["big.bin", len(BIG), hashlib.sha256(BIG).hexdigest(), False],
    ],
}
