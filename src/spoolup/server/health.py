"""What ``/healthz`` checks beyond "the storage answers": room left to receive uploads."""

from __future__ import annotations

import os
import tempfile

from spoolup.storage.base import Storage
from spoolup.storage.local import LocalStorage

__all__ = ["space_problem"]


def _free(folder: str) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def space_problem(storage: Storage, min_free: int) -> str | None:
    """Why uploads would fail for lack of room, or ``None`` when there is enough.

    The storage folder (local storage only: S3 has no free space to ask for) and the
    temp folder (where checksummed tus chunks wait) must each have ``min_free`` bytes
    free. The message names neither folder: clients never see the server's paths.
    """
    folders = [("the temp folder", tempfile.gettempdir())]
    if isinstance(storage, LocalStorage):
        folders.insert(0, ("the storage", str(storage.root)))
    for name, folder in folders:
        try:
            free = _free(folder)
        except OSError:
            return f"{name} cannot be checked"
        if free < min_free:
            return f"{name} is full: {free} bytes free, {min_free} needed to take uploads"
    return None
