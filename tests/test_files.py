"""UploadedFile: one interface over memory, temp files and other readers; atomic saves."""

from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path

import pytest

from spoolup._cleanup import SpoolFile
from spoolup.files import FileInfo, UploadedFile


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temp dir for spoolup's temp files."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


INFO = FileInfo(
    "upload",
    "report.pdf",
    "../report.pdf",
    "application/pdf",
    None,
    (("content-type", "application/pdf"),),
)
DATA = bytes(range(256)) * 1000


def disk_file(data: bytes = DATA, info: FileInfo = INFO) -> UploadedFile:
    spool = SpoolFile()
    spool.file.write(data)
    return UploadedFile.from_info(info, spool.file, size=len(data), path=spool.path, spool=spool)


def test_memory_file_reads_seeks_and_chunks(tmp: Path) -> None:
    f = UploadedFile.from_bytes(INFO, DATA)
    assert f.in_memory
    assert f.path is None
    assert (f.field_name, f.filename, f.raw_filename) == ("upload", "report.pdf", "../report.pdf")
    assert f.content_type == "application/pdf"
    assert f.headers == (("content-type", "application/pdf"),)
    assert f.size == len(DATA)
    assert f.read(10) == DATA[:10]
    assert f.tell() == 10
    assert f.seek(-6, os.SEEK_END) == len(DATA) - 6
    assert f.read() == DATA[-6:]
    assert b"".join(f.chunks(1000)) == DATA
    assert [len(c) for c in f.chunks(100_000)] == [100_000, 100_000, 56_000]
    assert "memory" in repr(f)
    assert f.file is not None
    f.close()
    assert f.closed
    assert list(tmp.iterdir()) == []


def test_disk_file_reads_and_is_removed_on_close(tmp: Path) -> None:
    f = disk_file()
    assert not f.in_memory
    assert f.path is not None
    assert f.path.parent == tmp
    assert f.path.name.startswith("spoolup-")
    assert f.read() == DATA
    assert str(f.path) in repr(f)
    with f:
        pass
    assert f.closed
    assert list(tmp.iterdir()) == []
    f.close()  # idempotent


def test_stream_file_without_path() -> None:
    f = UploadedFile(io.BufferedReader(io.BytesIO(b"abc")), size=3, filename="a")
    assert not f.in_memory
    assert f.path is None
    assert "stream" in repr(f)
    assert f.hashes == {}
    assert f.read() == b"abc"


def test_from_info_shares_hashes() -> None:
    info = FileInfo("f", "a.txt")
    f = UploadedFile.from_bytes(info, b"x")
    info.hashes["sha256"] = "00"
    assert f.hashes == {"sha256": "00"}


def test_save_renames_a_temp_file(tmp: Path, tmp_path: Path) -> None:
    f = disk_file()
    assert f.path is not None
    inode = f.path.stat().st_ino
    dest = tmp_path / "kept.bin"
    assert f.save(dest) == dest
    assert dest.stat().st_ino == inode  # moved, not copied
    assert f.path == dest
    assert list(tmp.iterdir()) == []
    assert f.read() == DATA  # still readable after the move
    f.close()
    assert dest.read_bytes() == DATA  # closing no longer removes it


def test_save_into_a_directory_uses_the_safe_name(tmp: Path, tmp_path: Path) -> None:
    with disk_file() as f:
        assert f.save(tmp_path) == tmp_path / "report.pdf"
    assert (tmp_path / "report.pdf").read_bytes() == DATA


def test_save_replaces_an_existing_file(tmp: Path, tmp_path: Path) -> None:
    dest = tmp_path / "x"
    dest.write_bytes(b"old")
    with disk_file(b"new") as f:
        f.save(dest, fsync=False)
    assert dest.read_bytes() == b"new"


def test_save_copies_across_filesystems(
    tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = Path.replace
    calls: list[Path] = []

    def replace(self: Path, target: str | os.PathLike[str]) -> Path:
        calls.append(self)
        if self.parent == tmp:
            raise OSError(errno.EXDEV, "cross-device link")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    f = disk_file()
    f.read(7)
    dest = tmp_path / "copy.bin"
    assert f.save(dest) == dest
    assert dest.read_bytes() == DATA
    assert f.tell() == 7  # position kept
    assert f.path is not None
    assert f.path.parent == tmp  # the temp file is still ours
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".spoolup-")] == []
    f.close()
    assert list(tmp.iterdir()) == []
    assert len(calls) == 2


def test_save_other_rename_errors_propagate(
    tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace(self: Path, target: str | os.PathLike[str]) -> Path:
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(Path, "replace", replace)
    with disk_file() as f, pytest.raises(PermissionError):
        f.save(tmp_path / "x")
    assert list(tmp.iterdir()) == []


def test_save_memory_file_is_atomic_and_leaves_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = UploadedFile.from_bytes(INFO, DATA)
    dest = tmp_path / "m.bin"
    assert f.save(dest) == dest
    assert dest.read_bytes() == DATA
    assert f.in_memory

    def broken(self: Path, target: str | os.PathLike[str]) -> Path:
        raise OSError(errno.ENOSPC, "full")

    monkeypatch.setattr(Path, "replace", broken)
    with pytest.raises(OSError, match="full"):
        f.save(tmp_path / "n.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]


async def test_async_twins_on_disk(tmp: Path, tmp_path: Path) -> None:
    f = disk_file()
    assert await f.aread(5) == DATA[:5]
    assert await f.aseek(0) == 0
    assert b"".join([c async for c in f.achunks(4096)]) == DATA
    dest = await f.asave(tmp_path / "a.bin")
    assert dest.read_bytes() == DATA
    async with f:
        pass
    assert f.closed


async def test_async_twins_in_memory(tmp: Path) -> None:
    f = UploadedFile.from_bytes(INFO, b"hello")
    assert await f.aread() == b"hello"
    assert await f.aseek(1) == 1
    assert [c async for c in f.achunks(2)] == [b"he", b"ll", b"o"]
    await f.aclose()
    assert f.closed
    g = disk_file()
    await g.aclose()
    assert list(tmp.iterdir()) == []


def test_in_memory_file_closed_before_it_was_read() -> None:
    file = UploadedFile.from_bytes(FileInfo("f", "a"), b"abc")
    file.close()
    assert file.closed
    with pytest.raises(ValueError):
        file.read()


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_save_of_a_closed_file_leaves_no_temp_file(where: str, tmp: Path, tmp_path: Path) -> None:
    f = UploadedFile.from_bytes(INFO, DATA) if where == "memory" else disk_file()
    f.close()
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ValueError, match="closed"):
        f.save(dest / "x.bin")
    assert list(dest.iterdir()) == []
