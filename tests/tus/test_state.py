"""Upload state round-trips through JSON and damaged state is a typed error."""

from __future__ import annotations

import base64
import json

import pytest

from spoolup.tus.state import StateError, UploadInfo


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_round_trip() -> None:
    info = UploadInfo(
        id="a" * 22,
        length=None,
        offset=7,
        metadata=(("filename", b64("r\u00e9sum\u00e9.pdf")), ("filetype", b64("application/pdf"))),
        created=1.5,
        expires=99.0,
        concat="final",
        parts=("b" * 22,),
        part_urls=("/tus/" + "b" * 22,),
        backend={"upload_id": "xyz", "parts": [[1, "etag", 5]]},
        record={"id": "r1"},
    )
    again = UploadInfo.from_json(info.to_json())
    assert again == info
    assert again.filename == "r\u00e9sum\u00e9.pdf"
    assert again.content_type == "application/pdf"
    assert not again.is_complete


def test_metadata_helpers() -> None:
    info = UploadInfo(id="x", length=3, offset=3, metadata=(("name", b64("n")), ("type", "")))
    assert info.is_complete
    assert info.filename == "n"
    assert info.content_type is None
    assert info.meta("missing") is None
    bad = UploadInfo(id="x", length=1, metadata=(("filename", base64.b64encode(b"\xff").decode()),))
    assert bad.filename is None


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"format": 2}',
        b'{"format": 1}',
        b"\xff\xfe",
        json.dumps({"format": 1, "id": "x", "length": "many", "offset": 0}).encode(),
    ],
)
def test_damaged_state_is_state_error(data: bytes) -> None:
    with pytest.raises(StateError) as info:
        UploadInfo.from_json(data)
    assert info.value.status == 410


def test_offset_out_of_range_is_state_error() -> None:
    good = json.loads(UploadInfo(id="x", length=3).to_json())
    good["offset"] = 4
    with pytest.raises(StateError, match="offset"):
        UploadInfo.from_json(json.dumps(good).encode())
    good["offset"] = -1
    good["length"] = None
    with pytest.raises(StateError, match="offset"):
        UploadInfo.from_json(json.dumps(good).encode())
