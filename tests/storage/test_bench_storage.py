"""The storage benchmark keeps working: tiny sizes, no timing asserted."""

from __future__ import annotations

import pytest

from benchmarks import bench_storage
from tests.seaweed import Seaweed

MiB = 1024 * 1024


def test_local_comparison_runs_both_ways() -> None:
    table = bench_storage.local_table(3 * MiB, 1)
    assert [row[0] for row in table.rows] == ["straight", "usual"]
    straight, usual = table.rows
    # Written to disk: straight once, usual twice (the temp file and the copy).
    assert int(straight[3]) == 3
    assert int(usual[3]) == 6
    assert any("faster than usual" in note for note in table.notes)


@pytest.mark.s3
def test_s3_memory_check_runs(seaweed: Seaweed) -> None:
    table = bench_storage.s3_table(12 * MiB, seaweed)
    assert len(table.rows) == 1
    assert table.rows[0][0] == "8 MiB"
    assert float(table.rows[0][4]) >= 0
