"""Bodies captured from real clients parse to exactly what those clients sent.

The bodies in ``tests/data/captures/`` were recorded from requests, httpx, urllib3,
aiohttp, the curl CLI and a form submitted by headless Chromium (regenerate them with
``tests/data/capture.py``). Each ``<client>.json`` lists the parts the client was asked
to send; every chunking of the body must give exactly those parts, through the sans-IO
parser and through ``spoolup.parse_form``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import spoolup
from spoolup.headers import multipart_boundary
from spoolup.multipart import MultipartParser, PartData, PartEnd, PartStart
from tests.chunking import chunkings

CAPTURES = Path(__file__).parent / "data" / "captures"
CLIENTS = ("aiohttp", "chromium", "curl", "httpx", "requests", "urllib3")


def load(client: str) -> tuple[dict[str, Any], bytes]:
    record = json.loads((CAPTURES / f"{client}.json").read_text(encoding="utf-8"))
    return record, (CAPTURES / f"{client}.body").read_bytes()


def parse_events(content_type: str, chunks: Iterable[bytes]) -> list[dict[str, Any]]:
    """Parts as the sans-IO parser reports them, in the shape of ``<client>.json``."""
    parser = MultipartParser(multipart_boundary(content_type))
    parts: list[dict[str, Any]] = []
    digest = None
    size = 0
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, PartStart):
                assert digest is None, "a part started inside another"
                digest, size = hashlib.sha256(), 0
                parts.append(
                    {
                        "name": event.name,
                        "filename": event.filename,
                        "raw_filename": event.raw_filename,
                        "content_type": event.content_type,
                        "charset": event.charset,
                    }
                )
            elif isinstance(event, PartData):
                assert digest is not None, "data outside a part"
                assert event.data, "empty PartData"
                digest.update(event.data)
                size += len(event.data)
            else:
                assert isinstance(event, PartEnd)
                assert digest is not None, "a part ended that never started"
                parts[-1].update(size=size, sha256=digest.hexdigest())
                digest = None
    parser.close()
    assert digest is None, "the last part never ended"
    return parts


def test_the_corpus_holds_every_client_and_stays_small() -> None:
    assert sorted(p.stem for p in CAPTURES.glob("*.json")) == list(CLIENTS)
    assert sorted(p.stem for p in CAPTURES.glob("*.body")) == list(CLIENTS)
    total = 0
    for client in CLIENTS:
        record, body = load(client)
        assert record["client"] == client
        assert len(body) == record["body_size"]
        assert hashlib.sha256(body).hexdigest() == record["body_sha256"]
        assert record["content_type"].startswith("multipart/form-data; boundary=")
        total += len(body)
    assert total < 100_000


@pytest.mark.parametrize("client", CLIENTS)
def test_parser_reads_every_chunking_of_a_capture(client: str) -> None:
    record, body = load(client)
    for label, chunks in chunkings(body):
        assert parse_events(record["content_type"], chunks) == record["parts"], label


@pytest.mark.parametrize("client", CLIENTS)
def test_parse_form_reads_a_capture(client: str) -> None:
    record, body = load(client)
    want_fields = [p for p in record["parts"] if p["raw_filename"] is None]
    # A file input left empty (filename="", no data) is no file in the form.
    want_files = [
        p
        for p in record["parts"]
        if p["raw_filename"] is not None and (p["raw_filename"] or p["size"])
    ]
    for label, chunks in chunkings(body):
        with spoolup.parse_form(chunks, record["content_type"]) as form:
            # Every capture's text is UTF-8, whether the client said so or not.
            fields = [
                {"name": name, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
                for name, value in form.fields.multi_items()
                for raw in [value.encode()]
            ]
            assert fields == [{k: p[k] for k in ("name", "size", "sha256")} for p in want_fields], (
                label
            )
            files = []
            for name, upload in form.files.multi_items():
                data = upload.read()
                assert upload.field_name == name
                assert upload.size == len(data)
                files.append(
                    {
                        "name": name,
                        "filename": upload.filename,
                        "raw_filename": upload.raw_filename,
                        "content_type": upload.content_type,
                        "charset": upload.charset,
                        "size": upload.size,
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
            assert files == want_files, label
