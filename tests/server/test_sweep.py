"""The leftover sweep of local storage: resumable uploads that no tus upload records."""

from __future__ import annotations

import os
import time
from pathlib import Path

from spoolup.server.sweep import LeftoverSweeper
from spoolup.storage import LocalStorage
from spoolup.tus import UploadInfo
from spoolup.tus.store import TusStore

DAY = 24 * 3600.0


def _age(folder: Path, seconds: float) -> None:
    """Make ``folder`` and what it holds look ``seconds`` old."""
    when = time.time() - seconds
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (when, when), follow_symlinks=False)


def test_old_upload_folders_no_tus_upload_records_are_swept(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    tus = TusStore(storage)
    live = UploadInfo(id="L" * 22, length=10, expires=time.time() + DAY)
    tus.create(live)  # an upload untouched for two days, still recorded: kept
    # A crash between starting an upload and saving its tus state leaves these.
    orphan = storage.begin_multipart(tus.key("O" * 22, "data"))
    recent = storage.begin_multipart(tus.key("R" * 22, "data"))
    uploads = tmp_path / "data" / ".uploads"
    _age(uploads / live.backend["mpu"], 2 * DAY)
    _age(uploads / orphan, 2 * DAY)
    _age(uploads / recent, DAY / 2)  # younger than the expiry: maybe being recorded now
    sweeper = LeftoverSweeper(storage, tus=tus, orphan_age=DAY, interval=300.0)

    assert sweeper.sweep() == 1
    assert sorted(p.name for p in uploads.iterdir()) == sorted([live.backend["mpu"], recent])
    assert tus.load(live.id) is not None
    assert storage.list_parts(tus.key(live.id, "data"), live.backend["mpu"]) == []
    assert sweeper.sweep() == 0


def test_an_unreadable_upload_state_does_not_stop_the_sweep(tmp_path: Path) -> None:
    # A damaged state (or one a newer release wrote) names no live upload: the sweep
    # goes on past it, and its upload, lost (410), is swept once old.
    storage = LocalStorage(tmp_path / "data")
    tus = TusStore(storage)
    damaged = UploadInfo(id="D" * 22, length=10)
    tus.create(damaged)
    storage.write(tus.key(damaged.id, "info"), b"{not json")
    orphan = storage.begin_multipart(tus.key("O" * 22, "data"))
    uploads = tmp_path / "data" / ".uploads"
    _age(uploads / damaged.backend["mpu"], 2 * DAY)
    _age(uploads / orphan, 2 * DAY)
    sweeper = LeftoverSweeper(storage, tus=tus, orphan_age=DAY, interval=300.0)

    assert sweeper.sweep() == 2
    assert list(uploads.iterdir()) == []
