"""The server benchmark keeps working: every app answers, disk writes are counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_server

pytestmark = pytest.mark.slow


def test_every_app_receives_the_upload(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    size = 4 * bench_server.MiB
    upload = work / "upload.bin"
    bench_server._make_upload(upload, size)
    results = {
        name: bench_server._run_app(name, upload, work, runs=1) for name in bench_server.APPS
    }
    for result in results.values():
        assert result.seconds > 0
        assert 0 < result.peak_rss < 500 * bench_server.MiB
        assert result.cpu_seconds >= 0
    assert results["drain"].write_bytes < size // 100
    assert 0.99 <= results["raw to file"].write_bytes / size < 1.1
    for name in ("spoolup serve", "spoolup serve, no metrics", "spoolup serve, hooks on"):
        assert 0.99 <= results[name].write_bytes / size < 1.1  # each byte written once
    assert results["starlette"].write_bytes / size > 1.9  # spooled, then copied


def test_in_process_cost_of_metrics_and_hooks() -> None:
    table = bench_server._in_process_table(2 * bench_server.MiB, 1)
    assert [row[0] for row in table.rows] == list(bench_server.IN_PROCESS)
    assert table.rows[0][2] == "1.000x"
    assert all(float(row[1]) > 0 for row in table.rows)
