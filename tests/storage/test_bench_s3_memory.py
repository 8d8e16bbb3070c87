"""The S3 memory benchmark keeps working: tiny sizes, no timing or memory asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_s3_memory
from tests.seaweed import Seaweed

pytestmark = [pytest.mark.s3, pytest.mark.slow]


def test_one_server_is_measured_and_tabled(seaweed: Seaweed, tmp_path: Path) -> None:
    run = bench_s3_memory.measure("smoke run", tmp_path, seaweed, None, quick=True)
    assert run.uploads == bench_s3_memory.QUICK_UPLOADS
    assert 0 < run.idle <= run.peak
    assert run.seconds > 0
    assert run.alone_seconds > 0
    assert run.stalled == bench_s3_memory.QUICK_STALLED
    table = bench_s3_memory.table([run, run])
    assert [row[0] for row in table.rows] == ["smoke run", "smoke run"]
    assert table.rows[1][4] == "1.00x"
