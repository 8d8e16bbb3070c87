from __future__ import annotations

from pathlib import Path

import pytest

from spoolup.server.config import ConfigError
from spoolup.server.store import FILES_PREFIX, RecordStore, key_of, open_store
from spoolup.storage import LocalStorage, ObjectMeta


def test_open_local(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "data"))
    assert isinstance(store.storage, LocalStorage)
    assert (tmp_path / "data").is_dir()


def test_open_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    store = open_store("s3://bucket/some/prefix")
    assert type(store.storage).__name__ == "S3Storage"
    assert store.storage.bucket == "bucket"  # type: ignore[attr-defined]
    assert store.storage.prefix == "some/prefix/"  # type: ignore[attr-defined]


@pytest.mark.parametrize("spec", ["s3://", "s3:///prefix", "ftp://host/x", "file:///tmp"])
def test_open_refuses(spec: str) -> None:
    with pytest.raises(ConfigError):
        open_store(spec)


async def test_records_skip_foreign_objects(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    store = RecordStore(storage)
    storage.write("tus/abc/info", b"{}")
    storage.write(FILES_PREFIX + "not-an-id", b"x")
    stored = storage.write(key_of("a" * 32), b"data", meta=ObjectMeta(filename="a.txt"))
    records = await store.list()
    assert [r.id for r in records] == ["a" * 32]
    assert records[0].content_type == "application/octet-stream"
    assert records[0].sha256 == stored.sha256
    assert await store.get("b" * 32) is None
    assert await store.delete("b" * 32) is False
    assert await store.delete("a" * 32) is True
    await store.check()
