"""LocalStorage beyond the shared suite: layout, full disk, crashes, confinement, leftovers."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spoolup.errors import UploadError
from spoolup.storage import (
    InsufficientStorage,
    InvalidKey,
    LocalStorage,
    ObjectMeta,
    ObjectNotFound,
    PartInfo,
    StorageError,
)
from spoolup.storage.local import META_SUFFIX, TEMP_SUFFIX

MiB = 1024 * 1024


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_layout(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("a/b", b"data", meta=ObjectMeta(filename="b.txt"))
    assert files_under(tmp_path) == ["a/.b.meta.json", "a/b"]
    sidecar = json.loads((tmp_path / "a" / ".b.meta.json").read_text())
    assert sidecar["filename"] == "b.txt"
    assert sidecar["size"] == 4
    assert repr(storage) == f"LocalStorage({str(tmp_path.resolve())!r})"


def test_temp_file_beside_target_while_writing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with storage.open_writer("dir/obj") as writer:
        writer.write(b"x" * (2 * MiB))
        names = os.listdir(tmp_path / "dir")
        assert len(names) == 1
        assert names[0].startswith(".obj.")
        assert names[0].endswith(TEMP_SUFFIX)
        writer.commit()
    assert sorted(os.listdir(tmp_path / "dir")) == [".obj.meta.json", "obj"]


def test_small_writes_are_gathered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    storage = LocalStorage(tmp_path)
    with storage.open_writer("small") as writer:
        for _ in range(3000):
            writer.write(b"y" * 1000)
        writer.commit()
    assert storage.read_bytes("small") == b"y" * 3_000_000
    assert len([c for c in calls if c >= MiB]) == 2  # two full buffers, then the rest


def test_full_disk_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("old", b"previous")
    real_write = os.write
    written = 0

    def full_disk(fd: int, data: bytes) -> int:
        nonlocal written
        if written > 2 * MiB:
            raise OSError(errno.ENOSPC, "No space left on device")
        written += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(InsufficientStorage) as caught:
        storage.write(
            "big", (b"z" * 65536 for _ in range(100)), meta=ObjectMeta(filename="big.bin")
        )
    assert caught.value.status == 507
    assert "no space" in caught.value.message
    with pytest.raises(InsufficientStorage):
        storage.write("old", [b"new" * MiB])
    assert files_under(tmp_path) == [".old.meta.json", "old"]
    assert storage.read_bytes("old") == b"previous"


def test_full_disk_at_fsync_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path)

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(InsufficientStorage):
        storage.write("x", b"data")
    assert files_under(tmp_path) == []


def test_other_os_errors_become_storage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path)

    def broken(fd: int, data: bytes) -> int:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "write", broken)
    with pytest.raises(StorageError, match="I/O error") as caught:
        storage.write("x", b"d" * (2 * MiB))
    assert not isinstance(caught.value, InsufficientStorage)
    assert files_under(tmp_path) == []


CRASHER = textwrap.dedent(
    """
    import sys, time
    from spoolup.storage import LocalStorage, ObjectMeta
    storage = LocalStorage(sys.argv[1])
    writer = storage.open_writer("victim", ObjectMeta(filename="v.bin"))
    for _ in range(64):
        writer.write(b"q" * 65536)
    print("writing", flush=True)
    while True:
        writer.write(b"q" * 65536)
        time.sleep(0.01)
    """
)


def _start_crasher(root: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(root)], stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"writing\n"
    return process


def _kill9(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_crash_mid_write_then_cleanup(tmp_path: Path) -> None:
    root = tmp_path / "root"
    LocalStorage(root).write("victim", b"the old version")
    process = _start_crasher(root)
    try:
        # Another live server's temp file is never removed, however old it looks.
        LocalStorage(root, stale_after=0)
        leftover = [n for n in os.listdir(root) if n.endswith(TEMP_SUFFIX)]
        assert len(leftover) == 1
    finally:
        _kill9(process)
    assert process.returncode == -signal.SIGKILL
    assert (root / leftover[0]).stat().st_size >= 4 * MiB
    # The writer is dead: its fresh leftover goes at the next start, whatever its age.
    storage = LocalStorage(root)
    assert sorted(os.listdir(root)) == [".victim.meta.json", "victim"]
    assert storage.read_bytes("victim") == b"the old version"


def test_periodic_cleanup_removes_a_dead_writers_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    storage = LocalStorage(root)
    process = _start_crasher(root)
    _kill9(process)
    assert [n for n in os.listdir(root) if n.endswith(TEMP_SUFFIX)]
    assert storage.cleanup() == 1
    assert os.listdir(root) == []


def test_sidecars_are_not_followed_through_symlinks(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"size": 1, "filename": "leaked", "content_type": "x/y"}')
    storage = LocalStorage(tmp_path / "root")
    storage.write("a", b"1", meta=ObjectMeta(filename="mine.txt"))
    meta = tmp_path / "root" / f".a{META_SUFFIX}"
    meta.unlink()
    meta.symlink_to(secret)
    info = storage.stat("a")
    assert info.filename is None
    assert info.content_type is None


def test_error_messages_never_show_server_paths(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    storage.write("a", b"1")
    messages = []
    for key in ("a/b", "a/b/c"):
        with pytest.raises(UploadError) as caught:
            storage.write(key, b"2")
        messages.append(str(caught.value))
    (tmp_path / "root" / "ro").mkdir()
    (tmp_path / "root" / "ro").chmod(0o500)
    try:
        if os.geteuid() != 0:
            with pytest.raises(StorageError) as failed:
                storage.write("ro/x", b"3")
            messages.append(str(failed.value))
    finally:
        (tmp_path / "root" / "ro").chmod(0o700)
    assert messages
    for message in messages:
        assert str(tmp_path) not in message, message


def test_cleanup_of_old_leftovers(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("keep/obj", b"1")
    orphan = tmp_path / "keep" / f".gone{META_SUFFIX}"
    orphan.write_text("{}")
    temp = tmp_path / "keep" / f".obj.abc{TEMP_SUFFIX}"
    temp.write_bytes(b"partial")
    upload_id = storage.begin_multipart("in/progress")
    old = time.time() - 7200
    for path in (orphan, temp):
        os.utime(path, (old, old))
    assert storage.cleanup(older_than=10_000) == 0
    assert storage.cleanup() == 2
    assert files_under(tmp_path / "keep") == [".obj.meta.json", "obj"]
    assert storage.list_parts("in/progress", upload_id) == []  # uploads are kept
    assert LocalStorage(tmp_path, cleanup=False).read_bytes("keep/obj") == b"1"


def test_reader_never_sees_partial_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    writer = storage.open_writer("new")
    writer.write(b"a" * MiB)
    with pytest.raises(ObjectNotFound):
        storage.open("new")
    assert storage.list().items == []
    writer.commit()
    assert storage.stat("new").size == MiB


# -- confinement ------------------------------------------------------------------------


def test_symlinked_folder_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    storage = LocalStorage(root)
    (root / "link").symlink_to(outside)
    with pytest.raises(InvalidKey, match="out of the storage root"):
        storage.open("link/secret")
    with pytest.raises(InvalidKey, match="out of the storage root"):
        storage.write("link/new", b"x")
    with pytest.raises(InvalidKey, match="out of the storage root"):
        storage.write("link/sub/new", b"x")
    assert sorted(os.listdir(outside)) == ["secret"]
    assert storage.list().items == []  # symlinks are not followed in listings


def test_symlinked_object_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (tmp_path / "target").write_bytes(b"outside")
    storage = LocalStorage(root)
    (root / "obj").symlink_to(tmp_path / "target")
    with pytest.raises(ObjectNotFound):
        storage.open("obj")
    with pytest.raises(ObjectNotFound):
        storage.stat("obj")
    storage.write("obj", b"inside")  # replaces the link, never writes through it
    assert (tmp_path / "target").read_bytes() == b"outside"
    assert storage.read_bytes("obj") == b"inside"


def test_symlinked_folder_inside_root_is_allowed(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    storage.write("alias/x", b"1")
    assert (tmp_path / "real" / "x").read_bytes() == b"1"


def test_root_given_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    storage = LocalStorage(tmp_path / "link")
    assert storage.root == (tmp_path / "real").resolve()
    storage.write("a", b"1")
    assert storage.read_bytes("a") == b"1"


def test_folder_and_object_conflicts(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("a", b"object")
    with pytest.raises(InvalidKey, match="not a folder"):
        storage.write("a/b", b"x")
    storage.write("c/d", b"x")
    with pytest.raises(InvalidKey, match="folder"):
        storage.write("c", b"x")
    with pytest.raises(ObjectNotFound):
        storage.open("c")
    with pytest.raises(ObjectNotFound):
        storage.stat("c")
    with pytest.raises(ObjectNotFound):
        storage.open("a/b")
    storage.delete("c")  # a folder: nothing to delete
    assert storage.read_bytes("c/d") == b"x"


def test_delete_removes_empty_folders(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("x/y/z", b"1")
    storage.write("x/keep", b"2")
    storage.delete("x/y/z")
    assert sorted(os.listdir(tmp_path / "x")) == [".keep.meta.json", "keep"]
    storage.delete("x/keep")
    assert os.listdir(tmp_path) == []


def test_metadata_of_another_size_is_ignored(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("obj", b"1234", meta=ObjectMeta(filename="a.txt"))
    (tmp_path / "obj").write_bytes(b"123")  # as if a crash fell between the renames
    info = storage.stat("obj")
    assert (info.size, info.filename, info.sha256) == (3, None, None)
    assert info.etag
    (tmp_path / ".obj.meta.json").write_text("not json")
    assert storage.stat("obj").filename is None


# -- resumable uploads --------------------------------------------------------------------


def test_a_non_durable_write_without_metadata_keeps_no_sidecar(tmp_path: Path) -> None:
    # State rewritten at every tus PATCH: one file and one rename, no sidecar.
    storage = LocalStorage(tmp_path)
    storage.write("s/info", b"first", meta=ObjectMeta(filename="info.json"))
    assert files_under(tmp_path) == ["s/.info.meta.json", "s/info"]
    written = storage.write("s/info", b"again", durable=False)
    # The old sidecar, the same size as the new bytes, is gone rather than trusted.
    assert files_under(tmp_path) == ["s/info"]
    assert storage.read_bytes("s/info") == b"again"
    info = storage.stat("s/info")
    assert (info.size, info.filename, info.sha256) == (5, None, None)
    assert written.etag == info.etag
    # With metadata, or durable, the sidecar is written as before.
    storage.write("s/info", b"third", meta=ObjectMeta(filename="x"), durable=False)
    assert storage.stat("s/info").filename == "x"


def test_local_parts_come_in_order(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    upload_id = storage.begin_multipart("u")
    with pytest.raises(ValueError, match="in order"):
        storage.upload_part("u", upload_id, 2, b"x")
    storage.upload_part("u", upload_id, 1, b"first")
    storage.upload_part("u", upload_id, 2, b"second, to be replaced")
    storage.upload_part("u", upload_id, 2, b"second")
    with pytest.raises(ValueError, match="in order"):
        storage.upload_part("u", upload_id, 1, b"x")
    info = storage.complete_multipart("u", upload_id)
    assert storage.read_bytes("u") == b"firstsecond"
    assert info.size == 11


def test_local_upload_survives_a_crash_between_data_and_state(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    upload_id = storage.begin_multipart("u", meta=ObjectMeta(filename="u.bin"))
    storage.upload_part("u", upload_id, 1, b"abc")
    with (tmp_path / ".uploads" / upload_id / "data").open("ab") as data:
        data.write(b"garbage from a crashed request")
    # Another process carries on: the state, not the file length, is the truth.
    other = LocalStorage(tmp_path)
    assert [p.size for p in other.list_parts("u", upload_id)] == [3]
    other.upload_part("u", upload_id, 2, b"def")
    other.complete_multipart("u", upload_id)
    assert storage.read_bytes("u") == b"abcdef"
    assert storage.stat("u").filename == "u.bin"


def test_local_complete_checks_parts(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    upload_id = storage.begin_multipart("u")
    part = storage.upload_part("u", upload_id, 1, b"abc")
    with pytest.raises(StorageError, match="fewer bytes than its parts say"):
        storage.complete_multipart("u", upload_id, [part, part])
    with pytest.raises(ObjectNotFound):
        storage.upload_part("other", upload_id, 1, b"x")
    (tmp_path / ".uploads" / upload_id / "state.json").write_text("{broken")
    with pytest.raises(StorageError, match="state"):
        storage.list_parts("u", upload_id)
    storage.abort_multipart("u", upload_id)
    assert os.listdir(tmp_path / ".uploads") == []


def test_check_a_vanished_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    storage.check()
    (tmp_path / "root").rmdir()
    with pytest.raises(StorageError, match="missing or not writable"):
        storage.check()


def test_move_is_a_rename(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    storage.write("tus/u/data", b"x" * 1000, meta=ObjectMeta(filename="a"))
    inode = (storage.root / "tus/u/data").stat().st_ino
    info = storage.move("tus/u/data", "files/f", sha256="0" * 64)
    assert (storage.root / "files/f").stat().st_ino == inode
    assert info.sha256 == "0" * 64
    # The emptied folders of the source go with it; nothing else is left.
    assert files_under(storage.root) == ["files/.f" + META_SUFFIX, "files/f"]


def test_local_append_streams_in_place(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert storage.appendable
    upload_id = storage.begin_multipart("a", meta=ObjectMeta(filename="a.bin"))
    out = storage.open_append("a", upload_id, 0)
    out.write(b"hello ")
    out.write(b"wor")
    out.sync()
    out.close()
    # A request that died after its offset was saved at 6: the 3 bytes past it go.
    out = storage.open_append("a", upload_id, 6)
    assert out.size == 6
    out.write(b"world")
    out.close()
    with pytest.raises(StorageError, match="fewer than its offset"):
        storage.open_append("a", upload_id, 100)
    info = storage.complete_multipart("a", upload_id, [PartInfo(1, 11, "append")])
    assert (info.size, info.filename) == (11, "a.bin")
    assert storage.read_bytes("a") == b"hello world"


def test_local_append_chunks_in_one_writev_and_after_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoolup.storage.local as local

    storage = LocalStorage(tmp_path)
    upload_id = storage.begin_multipart("a")
    out = storage.open_append("a", upload_id, 0)
    calls: list[int] = []
    real_writev = os.writev

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        # The kernel may take fewer bytes than asked: here 5 at most.
        calls.append(len(buffers))
        first = b"".join(buffers)[:5]
        return real_writev(fd, [first])

    out.write_chunks([b"abc", b"defgh", b"ij"])
    assert out.size == 10
    monkeypatch.setattr(os, "writev", short_writev)
    out.write_chunks([b"klm", b"nopqrs", b"", b"tu"])
    assert calls == [4]  # one writev, the rest written after it
    monkeypatch.setattr(local, "_IOV_MAX", 2)
    out.write_chunks([b"v", b"w", b"xyz"])  # past IOV_MAX: a write each
    assert calls == [4]
    assert out.size == 26
    out.close()
    storage.complete_multipart("a", upload_id, [PartInfo(1, 26, "append")])
    assert storage.read_bytes("a") == b"abcdefghijklmnopqrstuvwxyz"
