"""Temp files that spoolup creates, and their removal whatever happens.

Every temp file is created here, in :func:`tempfile.gettempdir` (so ``TMPDIR`` is
honoured) with the ``spoolup-`` prefix, and is owned by one :class:`SpoolFile`. The file
is removed when its owner is closed, when the owner is garbage collected, and at
interpreter exit for owners still alive (a :func:`weakref.finalize` does both), so a
form that is never closed leaves nothing behind on a normal exit. A process killed by
a signal it does not handle cannot clean up: nothing can.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import weakref
from pathlib import Path
from typing import BinaryIO

from spoolup import _io
from spoolup._io import BackgroundSync

__all__ = ["TEMP_PREFIX", "SpoolFile"]

TEMP_PREFIX = "spoolup-"


def _close_and_remove(file: BinaryIO, path: str, sync: BackgroundSync) -> None:
    # Runs at close, at garbage collection or at exit: it must never raise. A sync in
    # flight ends before its descriptor is closed (whose number could be reused).
    sync.cancel()
    with contextlib.suppress(OSError, ValueError):
        file.close()
    with contextlib.suppress(OSError):
        Path(path).unlink()


class SpoolFile:
    """A temp file opened for writing and reading, removed with its owner.

    ``file`` is a buffered binary file; writes larger than its buffer go straight to
    the operating system without an extra copy. ``sync`` writes it back to disk in the
    background as it grows past ``TEMP_SYNC_AFTER`` bytes (whoever writes calls
    ``sync.wrote``), so that a final fsync (``UploadedFile.save``) has little left to
    do. :meth:`keep` hands the file on disk over to its caller (after a rename, for
    instance): it is then no longer removed.
    """

    __slots__ = ("__weakref__", "_finalizer", "file", "path", "sync")

    def __init__(self, *, dir: str | os.PathLike[str] | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=dir)
        try:
            self.file: BinaryIO = os.fdopen(fd, "w+b")
        except BaseException:  # pragma: no cover - open() on a fresh fd does not fail
            os.close(fd)
            Path(name).unlink()
            raise
        self.path = Path(name)
        self.sync = BackgroundSync(fd, start_after=_io.TEMP_SYNC_AFTER)
        self._finalizer = weakref.finalize(self, _close_and_remove, self.file, name, self.sync)

    @property
    def removed(self) -> bool:
        """True once the file was closed and removed (or kept)."""
        return not self._finalizer.alive

    def keep(self, path: Path) -> None:
        """The file now lives at ``path`` and belongs to the caller: never remove it."""
        self._finalizer.detach()
        self.path = path

    def close(self) -> None:
        """Close the file and remove it from disk (unless :meth:`keep` was called)."""
        if self._finalizer.alive:
            self._finalizer()
        else:
            self.sync.cancel()
            self.file.close()
