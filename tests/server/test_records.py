from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from spoolup.server.records import FileRecord, is_file_id, new_file_id, utc_now


def test_ids() -> None:
    ids = {new_file_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_file_id(i) for i in ids)


def test_hostile_ids_are_not_ids() -> None:
    for value in [
        "..",
        "../etc/passwd",
        "%2e%2e",
        "a" * 32 + "\x00",
        "A" * 32,
        "0" * 33,
        "",
        "0" * 31,
    ]:
        assert not is_file_id(value)


def test_record_json() -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    record = FileRecord("0" * 32, "a.txt", 3, "text/plain", "ab" * 32, created)
    assert record.to_json() == {
        "id": "0" * 32,
        "filename": "a.txt",
        "size": 3,
        "content_type": "text/plain",
        "sha256": "ab" * 32,
        "created": "2026-01-02T01:04:05.000006Z",
    }
    assert record.etag == '"' + "ab" * 32 + '"'


def test_utc_now() -> None:
    assert utc_now().tzinfo is UTC
