"""A storage backend over a local folder, written atomically.

Layout under ``root`` (a key ``a/b`` is the file ``root/a/b``)::

    a/b                       the object
    a/.b.meta.json            its metadata (a JSON sidecar)
    a/.b.<owner>.<random>.spoolup-tmp
                              an object or sidecar being written (removed on abort)
    .uploads/<id>/            a resumable upload: ``data`` and ``state.json``

Names starting with a dot are never keys (:func:`~spoolup.storage.validate_key`), so
these files cannot collide with objects and listings skip them.

**Writes.** The bytes go to a temp name in the target's own directory (same
filesystem, so the final rename is atomic); on commit the file is flushed and
fsynced, the sidecar is written the same way and renamed first, then the object is
renamed into place and the directory fsynced. A reader sees the old object or the new
one, never a part; a crash leaves only a temp name, which carries the process that
wrote it (:mod:`spoolup.storage.owners`): the next ``LocalStorage(root)`` or
:meth:`LocalStorage.cleanup` removes it at once when that process is dead, and after
``stale_after`` seconds when it cannot tell (a process of another machine). While a
large object is written, every 16 MiB a background writeback starts
(``spoolup._io.start_writeback``), so that the fsync at commit has little left to wait for.

**Why a sidecar, not extended attributes.** xattrs would travel with the rename, but
many filesystems and most copy and backup tools drop them, and their size is
limited; a small JSON file beside the object survives ``cp -r``, ``rsync`` and
``tar``. The sidecar records the object's size: metadata whose size does not match
the file (a crash between the two renames) is ignored rather than trusted.

**Confinement.** Keys are validated, the root is resolved once, every directory on a
key's path is checked to resolve inside the root (a symlink pointing out is refused),
and objects and sidecars are opened with ``O_NOFOLLOW``. Error messages name keys,
never paths of the server. This guards against keys, not against
another local user racing to swap directories for symlinks under the root.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import logging
import os
import re
import secrets
import shutil
import stat as stat_mod
import time
from collections.abc import Container, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from spoolup import _io
from spoolup._io import COPY_SIZE, DIRECT_WRITE, BackgroundSync
from spoolup.storage.errors import InsufficientStorage, InvalidKey, ObjectNotFound, StorageError
from spoolup.storage.meta import ListPage, ObjectInfo, ObjectMeta, PartInfo, validate_key
from spoolup.storage.owners import is_dead, this_process
from spoolup.storage.ranges import FileRangeReader, check_range
from spoolup.storage.resumable import PartAppender, ResumableStorage
from spoolup.storage.writer import ObjectWriter, WriteSource

__all__ = ["LocalStorage"]

TEMP_SUFFIX = ".spoolup-tmp"
META_SUFFIX = ".meta.json"
UPLOADS_DIR = ".uploads"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")

logger = logging.getLogger("spoolup.storage")
# Chunks of at least DIRECT_WRITE bytes are written as they come, with no copy; smaller
# ones are gathered into a buffer of _BUFFER_SIZE before a write system call.
_BUFFER_SIZE = COPY_SIZE
# A sidecar is a few hundred bytes; a bigger one is not ours.
_MAX_SIDECAR = 1024 * 1024
# Room left in a 255-byte file name for the temp name's owner, random part and suffix.
_TEMP_STEM = 150
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Buffers one writev takes at most (IOV_MAX: 1024 on Linux).
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def _storage_error(exc: OSError, what: str) -> StorageError:
    # strerror, not str(exc): that names the file, a path of the server.
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(f"no space left while {what}: {exc.strerror}")
    return StorageError(f"{what} failed: {exc.strerror or exc.__class__.__name__}")


def _temp_path(path: Path) -> Path:
    """A fresh temp name beside ``path``, carrying this process as its owner."""
    return path.with_name(
        f".{path.name[:_TEMP_STEM]}.{this_process()}.{secrets.token_hex(8)}{TEMP_SUFFIX}"
    )


def _temp_owner(name: str) -> str:
    """The owner tag of a temp file name (empty for names from before owners)."""
    parts = name.removesuffix(TEMP_SUFFIX).rsplit(".", 2)
    return parts[1] if len(parts) == 3 else ""


def _read_sidecar(path: Path) -> bytes:
    """The sidecar's bytes; a symlink, a folder or a huge file is refused (OSError)."""
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode) or st.st_size > _MAX_SIDECAR:
            raise OSError(errno.EINVAL, "not a sidecar")
        with os.fdopen(os.dup(fd), "rb") as file:
            return file.read(_MAX_SIDECAR + 1)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _writev_all(fd: int, chunks: Sequence[bytes], size: int) -> None:
    """Write ``chunks`` (``size`` bytes in all) with ``writev``, the rest if it fell short."""
    if not hasattr(os, "writev") or len(chunks) > _IOV_MAX:
        for chunk in chunks:
            _write_all(fd, chunk)
        return
    written = os.writev(fd, chunks)
    if written == size:
        return
    for chunk in chunks:  # a short write: finish byte-exact from where it stopped
        if written >= len(chunk):
            written -= len(chunk)
            continue
        _write_all(fd, memoryview(chunk)[written:])
        written = 0


def _write_file_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` by temp name, fsync and rename (no directory fsync)."""
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW, 0o666)
    try:
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _meta_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{META_SUFFIX}")


def _sidecar(size: int, meta: ObjectMeta, sha256: str | None) -> bytes:
    record = {
        "size": size,
        "filename": meta.filename,
        "content_type": meta.content_type,
        "sha256": sha256,
        "metadata": dict(meta.metadata),
    }
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")


class _LocalWriter(ObjectWriter):
    def __init__(self, storage: LocalStorage, key: str, meta: ObjectMeta | None) -> None:
        super().__init__(key, meta)
        self._storage = storage
        self._path = storage._object_path(self.key, create=True)
        self._tmp = _temp_path(self._path)
        # A fixed buffer filled by slice assignment: growing and clearing a bytearray
        # reallocates and copies the same bytes several times.
        self._buffer: bytearray | None = None
        self._buffered = 0
        try:
            self._fd: int | None = os.open(
                self._tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW,
                0o666,
            )
        except OSError as exc:
            raise _storage_error(exc, f"creating {self.key!r}") from exc
        self._sync = BackgroundSync(self._fd)

    def _write(self, data: bytes) -> None:
        size = len(data)
        try:
            if size < DIRECT_WRITE:
                if self._buffer is None:
                    self._buffer = bytearray(_BUFFER_SIZE)
                start = self._buffered
                room = _BUFFER_SIZE - start
                if size < room:
                    self._buffer[start : start + size] = data
                    self._buffered = start + size
                else:
                    with memoryview(data) as view:
                        self._buffer[start:] = view[:room]
                        self._buffered = _BUFFER_SIZE
                        self._flush()
                        self._buffer[: size - room] = view[room:]
                    self._buffered = size - room
            else:
                self._flush()
                self._write_fd(data)
        except OSError as exc:
            raise _storage_error(exc, f"writing {self.key!r}") from exc

    def _flush(self) -> None:
        if self._buffered:
            assert self._buffer is not None
            with memoryview(self._buffer) as view:
                self._write_fd(view[: self._buffered])
            self._buffered = 0

    def _write_fd(self, data: bytes | memoryview) -> None:
        fd = self._fd
        assert fd is not None
        _write_all(fd, data)
        self._sync.wrote(len(data))

    def _commit(self) -> ObjectInfo:
        fd = self._fd
        assert fd is not None
        path = self._path
        try:
            self._flush()
            self._buffer = None
            self._sync.wait()
            if self.durable:
                os.fsync(fd)
            # After the fsync: the hashing thread finishes its last batches meanwhile.
            sha256 = self.sha256
            st = os.fstat(fd)
            self._fd = None
            os.close(fd)
            sidecar = _sidecar(self.size, self.meta, sha256)
            # Sidecar first: a crash in between leaves new metadata whose size check
            # fails against the old object, never an object with no way to tell.
            _write_file_atomic(_meta_path(path), sidecar, sync=self.durable)
            self._tmp.replace(path)
            if self.durable:
                _fsync_dir(path.parent)
        except OSError as exc:
            raise _storage_error(exc, f"committing {self.key!r}") from exc
        return ObjectInfo(
            key=self.key,
            size=self.size,
            created=datetime.fromtimestamp(st.st_mtime, UTC),
            filename=self.meta.filename,
            content_type=self.meta.content_type,
            sha256=sha256,
            etag=sha256,
            metadata=dict(self.meta.metadata),
        )

    def _abort(self) -> None:
        self._buffer = None
        self._buffered = 0
        self._sync.cancel()  # the fd stays open until a running writeback returns
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class _Appender(PartAppender):
    """Appends to a resumable upload's data file; a background writeback every 16 MiB."""

    def __init__(self, path: Path, offset: int) -> None:
        fd = os.open(path, os.O_WRONLY | _O_CLOEXEC | _O_NOFOLLOW)
        try:
            found = os.fstat(fd).st_size
            if found > offset:  # bytes of a request that died before saving its offset
                os.ftruncate(fd, offset)
            if found >= offset:
                os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        if found < offset:
            os.close(fd)
            msg = f"the upload holds {found} bytes, fewer than its offset {offset}"
            raise StorageError(msg)
        self._fd: int | None = fd
        self.size = offset
        self._synced = offset  # bytes known durable: a checkpoint may count them
        self._sync = BackgroundSync(fd)

    def write(self, data: bytes) -> None:
        self.write_chunks((data,))

    def write_chunks(self, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` with one ``writev`` (more only if the kernel takes less)."""
        fd = self._fd
        assert fd is not None
        size = sum(map(len, chunks))
        try:
            _writev_all(fd, chunks, size)
            self._sync.wrote(size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # A full disk: give back the room of every byte no checkpoint can
                # count yet, so that the upload holds nothing unaccounted.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._synced)
                self.size = self._synced
            raise _storage_error(exc, "appending to an upload") from exc
        self.size += size

    def sync(self) -> None:
        assert self._fd is not None
        written = self.size  # every byte up to here is in the file: the sync covers it
        try:
            self._sync.wait()
            _io.fdatasync(self._fd)
        except OSError as exc:
            raise _storage_error(exc, "syncing an upload") from exc
        self._synced = max(self._synced, written)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self._sync.cancel()
        finally:
            os.close(fd)


class LocalStorage(ResumableStorage):
    """Objects as files under ``root``, written atomically, metadata in sidecars.

    ``root`` is created if missing. On construction, leftovers of interrupted writes
    (temp names, orphaned sidecars) older than ``stale_after`` seconds are removed
    (``cleanup=False`` skips the walk; :meth:`cleanup` runs it on demand). Resumable
    uploads live in ``root/.uploads`` until completed or aborted; they are not
    removed by the cleanup (tus expires them). See the module docstring for the
    layout and the guarantees.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, stale_after: float = 3600.0, cleanup: bool = True
    ) -> None:
        root_path = Path(root)
        root_path.mkdir(parents=True, exist_ok=True)
        self.root = root_path.resolve(strict=True)
        self.stale_after = stale_after
        if cleanup:
            self.cleanup()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------

    def _inside(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def _shown(self, path: Path) -> str:
        """``path`` as messages show it: relative to the root, never the server's path."""
        try:
            return repr(path.relative_to(self.root).as_posix())
        except ValueError:
            return "a folder outside the storage"

    def _object_path(self, key: str, *, create: bool = False) -> Path:
        validate_key(key)
        path = self.root.joinpath(*key.split("/"))
        parent = path.parent
        if create:
            self._makedirs(parent)
        real_parent = Path(os.path.realpath(parent))
        if not self._inside(real_parent):
            raise InvalidKey(f"the key {key!r} leads out of the storage root")
        if create and path.is_dir() and not path.is_symlink():
            raise InvalidKey(f"the key {key!r} is a folder of other objects")
        return real_parent / path.name

    def _makedirs(self, directory: Path) -> None:
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        # Check where the existing part leads before creating anything under it.
        if not self._inside(Path(os.path.realpath(current))):
            raise InvalidKey(f"{self._shown(directory)} leads out of the storage root")
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            except NotADirectoryError as exc:
                msg = f"a part of {self._shown(directory)} is an object, not a folder"
                raise InvalidKey(msg) from exc
            except OSError as exc:
                raise _storage_error(exc, f"creating {self._shown(folder)}") from exc
            _fsync_dir(folder.parent)
        if not directory.is_dir():
            raise InvalidKey(f"a part of {self._shown(directory)} is an object, not a folder")

    def _regular_file(self, key: str) -> tuple[Path, os.stat_result]:
        path = self._object_path(key)
        try:
            st = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise ObjectNotFound(key)
        return path, st

    # -- the interface -----------------------------------------------------------------

    def open_writer(self, key: str, meta: ObjectMeta | None = None) -> ObjectWriter:
        """Start writing ``key`` to a temp name beside it; see :class:`ObjectWriter`."""
        return _LocalWriter(self, key, meta)

    def write(
        self,
        key: str,
        data: WriteSource,
        meta: ObjectMeta | None = None,
        *,
        durable: bool = True,
    ) -> ObjectInfo:
        """Write a whole object atomically; see :meth:`Storage.write`.

        A non-durable write of bytes without metadata (state rewritten often, such as
        a tus upload's offset) keeps no sidecar: one file written and renamed, no
        digest recorded (``stat`` then gives none). Any older sidecar is removed first,
        so that a crash leaves the object with no metadata rather than stale one.
        """
        if durable or meta is not None or not isinstance(data, bytes):
            return super().write(key, data, meta, durable=durable)
        path = self._object_path(key, create=True)
        try:
            with contextlib.suppress(FileNotFoundError):
                _meta_path(path).unlink()
            _write_file_atomic(path, data, sync=False)
            st = path.lstat()
        except OSError as exc:
            raise _storage_error(exc, f"writing {key!r}") from exc
        return self._info(key, path, st, with_metadata=False)

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> BinaryIO:
        """Open the object (never following a symlink); see :meth:`Storage.open`."""
        check_range(start, end)
        path = self._object_path(key)
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ObjectNotFound(key) from None
            raise _storage_error(exc, f"opening {key!r}") from exc
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            os.close(fd)
            raise ObjectNotFound(key)
        file = os.fdopen(fd, "rb")
        if start == 0 and end is None:
            return file
        stop = st.st_size if end is None else min(end, st.st_size)
        return io.BufferedReader(FileRangeReader(file, start, stop))

    def stat(self, key: str) -> ObjectInfo:
        """Describe the object from its file and sidecar; see :meth:`Storage.stat`."""
        path, st = self._regular_file(key)
        return self._info(key, path, st, with_metadata=True)

    def _info(self, key: str, path: Path, st: os.stat_result, *, with_metadata: bool) -> ObjectInfo:
        record: dict[str, Any] = {}
        if with_metadata:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(_read_sidecar(_meta_path(path)))
                if isinstance(loaded, dict) and loaded.get("size") == st.st_size:
                    record = loaded
        sha256 = record.get("sha256")
        return ObjectInfo(
            key=key,
            size=st.st_size,
            created=datetime.fromtimestamp(st.st_mtime, UTC),
            filename=record.get("filename"),
            content_type=record.get("content_type"),
            sha256=sha256,
            etag=sha256 or f"{st.st_mtime_ns:x}-{st.st_size:x}",
            metadata=dict(record.get("metadata") or {}),
        )

    def list(self, prefix: str = "", *, limit: int = 1000, token: str | None = None) -> ListPage:
        """Walk the folders under the prefix; see :meth:`Storage.list`.

        Each call walks the matching part of the tree: fine for thousands of objects.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        folder, _, _ = prefix.rpartition("/")
        start = self._object_path(folder + "/x").parent if folder else self.root
        found = sorted(
            (key, path, st)
            for key, path, st in self._walk(start, f"{folder}/" if folder else "")
            if key.startswith(prefix) and (token is None or key > token)
        )
        page = found[:limit]
        items = [self._info(key, path, st, with_metadata=False) for key, path, st in page]
        more = len(found) > limit
        return ListPage(items, page[-1][0] if more else None)

    def _walk(self, folder: Path, base: str) -> Iterator[tuple[str, Path, os.stat_result]]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), f"{base}{entry.name}/")
            elif entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    yield f"{base}{entry.name}", Path(entry.path), entry.stat(follow_symlinks=False)

    def delete(self, key: str) -> None:
        """Remove the object, its sidecar and folders left empty; see :meth:`Storage.delete`."""
        path = self._object_path(key)
        try:
            if path.is_dir() and not path.is_symlink():
                return
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                path.unlink()
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                _meta_path(path).unlink()
            parent = path.parent
            while parent != self.root:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent
        except OSError as exc:
            raise _storage_error(exc, f"deleting {key!r}") from exc

    def move(
        self, src: str, dest: str, *, meta: ObjectMeta | None = None, sha256: str | None = None
    ) -> ObjectInfo:
        """Rename the object's file to ``dest`` with a new sidecar; see :meth:`Storage.move`.

        No byte is copied: the new sidecar is written first (as in a commit), then the
        file is renamed into place, its time set to now (the new object's ``created``).
        """
        path, st = self._regular_file(src)
        old = self._info(src, path, st, with_metadata=True)
        checked = (old.meta if meta is None else meta).checked()
        target = self._object_path(dest, create=True)
        sidecar = _sidecar(st.st_size, checked, sha256 or old.sha256)
        try:
            _write_file_atomic(_meta_path(target), sidecar)
            os.utime(path)
            path.replace(target)
            _fsync_dir(target.parent)
            if src != dest:
                with contextlib.suppress(FileNotFoundError):
                    _meta_path(path).unlink()
                self._prune(path.parent)
                _fsync_dir(path.parent if path.parent.exists() else self.root)
        except OSError as exc:
            raise _storage_error(exc, f"moving {src!r} to {dest!r}") from exc
        return self.stat(dest)

    def _prune(self, folder: Path) -> None:
        """Remove ``folder`` and its parents up to the root while they are empty."""
        while folder != self.root and self._inside(folder):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def check(self) -> None:
        """Raise :class:`StorageError` unless ``root`` is a folder this process can write."""
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError("the storage folder is missing or not writable")

    # -- leftovers ---------------------------------------------------------------------

    def cleanup(self, older_than: float | None = None) -> int:
        """Remove leftovers of interrupted writes; return how many files were removed.

        A temp name written by a process that is dead is removed whatever its age; one
        of a live process never is; one whose writer cannot be checked (another
        machine), and an orphaned sidecar, once older than ``older_than`` seconds
        (``stale_after`` by default). Resumable uploads in ``.uploads`` are left alone.
        """
        age = self.stale_after if older_than is None else older_than
        limit = time.time() - age
        removed = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and UPLOADS_DIR in dirnames:
                dirnames.remove(UPLOADS_DIR)
            for name in filenames:
                if not name.startswith("."):
                    continue
                path = Path(dirpath, name)
                if name.endswith(TEMP_SUFFIX):
                    dead = is_dead(_temp_owner(name))
                    if dead is False:
                        continue
                    stale = dead is True
                elif name.endswith(META_SUFFIX):
                    stale = False
                    if path.with_name(name[1 : -len(META_SUFFIX)]).exists():
                        continue
                else:
                    continue
                with contextlib.suppress(OSError):
                    if stale or path.lstat().st_mtime <= limit:
                        path.unlink()
                        removed += 1
        return removed

    def cleanup_uploads(self, older_than: float, *, keep: Container[str] = ()) -> int:
        """Remove resumable uploads nobody holds; return how many were removed.

        An upload folder in ``.uploads`` whose id is not in ``keep`` (the live resumable
        uploads, such as those tus records name) and in which nothing changed for
        ``older_than`` seconds is an orphan: a crash between starting it and recording
        it, or an abort that never ran. Each removal is logged.
        """
        limit = time.time() - older_than
        removed = 0
        try:
            folders = list(os.scandir(self.root / UPLOADS_DIR))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise _storage_error(exc, "listing the resumable uploads") from exc
        for folder in folders:
            if folder.name in keep or not _UPLOAD_ID.fullmatch(folder.name):
                continue
            try:
                if not folder.is_dir(follow_symlinks=False):
                    continue
                changed = folder.stat(follow_symlinks=False).st_mtime
                for entry in os.scandir(folder.path):
                    changed = max(changed, entry.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
            if changed > limit:
                continue
            shutil.rmtree(folder.path, ignore_errors=True)
            logger.info("removed the orphaned resumable upload %s", folder.name)
            removed += 1
        return removed

    # -- resumable uploads -------------------------------------------------------------

    def _upload_dir(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            raise InvalidKey(f"not an upload id: {upload_id!r}")
        return self.root / UPLOADS_DIR / upload_id

    def _load_state(self, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        folder = self._upload_dir(upload_id)
        try:
            state: dict[str, Any] = json.loads((folder / "state.json").read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{key} (upload {upload_id})") from None
        except (OSError, ValueError) as exc:
            msg = f"reading the state of upload {upload_id} failed: {exc.__class__.__name__}"
            raise StorageError(msg) from exc
        if state.get("key") != key:
            raise ObjectNotFound(f"{key} (upload {upload_id})")
        return folder, state

    def begin_multipart(self, key: str, meta: ObjectMeta | None = None) -> str:
        """Start a resumable upload in ``root/.uploads/<id>``; see :class:`ResumableStorage`.

        Locally the parts are appended to one file, so they must come in order:
        part ``n + 1`` after part ``n``; sending the last part again replaces it.
        """
        validate_key(key)
        checked = ObjectMeta() if meta is None else meta.checked()
        upload_id = secrets.token_hex(16)
        folder = self._upload_dir(upload_id)
        state: dict[str, Any] = {
            "key": key,
            "filename": checked.filename,
            "content_type": checked.content_type,
            "metadata": dict(checked.metadata),
            "parts": [],
        }
        try:
            self._makedirs(folder)
            (folder / "data").touch()
            _write_file_atomic(folder / "state.json", json.dumps(state).encode())
        except OSError as exc:
            raise _storage_error(exc, f"starting an upload of {key!r}") from exc
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> PartInfo:
        """Append part ``number`` (the next one, or the last one again)."""
        folder, state = self._load_state(key, upload_id)
        sizes: list[int] = state["parts"]
        if number == len(sizes) and number >= 1:
            sizes.pop()
        elif number != len(sizes) + 1:
            msg = f"local uploads take parts in order: expected part {len(sizes) + 1}, not {number}"
            raise ValueError(msg)
        offset = sum(sizes)
        try:
            fd = os.open(folder / "data", os.O_WRONLY | _O_CLOEXEC | _O_NOFOLLOW)
            try:
                os.lseek(fd, offset, os.SEEK_SET)
                _write_all(fd, data)
                os.ftruncate(fd, offset + len(data))
                os.fsync(fd)
            finally:
                os.close(fd)
            sizes.append(len(data))
            _write_file_atomic(folder / "state.json", json.dumps(state).encode())
        except OSError as exc:
            raise _storage_error(exc, f"writing part {number} of {key!r}") from exc
        return PartInfo(number, len(data), f"{number}-{len(data)}")

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """The parts appended so far."""
        _, state = self._load_state(key, upload_id)
        return [
            PartInfo(number, size, f"{number}-{size}")
            for number, size in enumerate(state["parts"], start=1)
        ]

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[PartInfo] | None = None,
        *,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Rename the appended data into place under ``key``, with its sidecar."""
        folder, state = self._load_state(key, upload_id)
        # The parts the caller kept are the truth (as on S3): an appended upload
        # (open_append) is completed with one part of its whole size.
        given = self.list_parts(key, upload_id) if parts is None else list(parts)
        size = sum(part.size for part in given)
        path = self._object_path(key, create=True)
        data = folder / "data"
        try:
            with data.open("r+b") as file:
                found = os.fstat(file.fileno()).st_size
                if found < size:
                    msg = f"upload {upload_id} holds fewer bytes than its parts say"
                    raise StorageError(msg)
                if found > size:  # else no truncate: it would only touch the inode's times
                    file.truncate(size)
                os.fsync(file.fileno())
            meta = ObjectMeta(state["filename"], state["content_type"], state["metadata"])
            sidecar = _sidecar(size, meta, sha256)
            _write_file_atomic(_meta_path(path), sidecar)
            data.replace(path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise _storage_error(exc, f"completing the upload of {key!r}") from exc
        shutil.rmtree(folder, ignore_errors=True)
        return self.stat(key)

    appendable = True

    def open_append(self, key: str, upload_id: str, offset: int) -> PartAppender:
        """Append to the upload's one data file from ``offset``; see :class:`ResumableStorage`."""
        folder, _ = self._load_state(key, upload_id)
        try:
            return _Appender(folder / "data", offset)
        except OSError as exc:
            raise _storage_error(exc, f"opening the upload of {key!r}") from exc

    def written_size(self, key: str, upload_id: str) -> int | None:
        """The size of the upload's data file; see :class:`ResumableStorage`."""
        try:
            return (self._upload_dir(upload_id) / "data").stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open_written(self, key: str, upload_id: str, start: int, end: int) -> BinaryIO | None:
        """Read ``start`` to ``end`` of the upload's data file; see :class:`ResumableStorage`."""
        check_range(start, end)
        folder, _ = self._load_state(key, upload_id)
        try:
            file = (folder / "data").open("rb")
        except OSError as exc:
            raise _storage_error(exc, f"reading the upload of {key!r}") from exc
        return io.BufferedReader(FileRangeReader(file, start, end))

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Remove the upload's folder."""
        validate_key(key)
        shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)
