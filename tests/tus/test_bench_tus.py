"""The tus benchmark keeps working: every server takes every workload, sha256 checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_tus

pytestmark = pytest.mark.slow

MiB = bench_tus.MiB


def test_every_server_takes_every_workload(tmp_path: Path) -> None:
    bench_tus.ensure_node_modules()
    data = tmp_path / "data.bin"
    digests = bench_tus.make_data(data, 8 * MiB, 8)
    setup = bench_tus.Setup(tmp_path)
    workloads = [
        (bench_tus.Workload("one", 1, 0), digests[:1]),
        (bench_tus.Workload("chunks", 1, 3 * MiB), digests[:1]),
        (bench_tus.Workload("eight", 8, MiB // 2), digests[1:]),
    ]
    for start in (bench_tus.start_spoolup, bench_tus.start_node, bench_tus.start_tuspyserver):
        with bench_tus.running(start, setup, s3=False) as server:
            for workload, want in workloads:
                measured = bench_tus.measure(server, workload, data, want)
                assert measured.mb_s > 0
                assert measured.cpu_per_gib >= 0
                assert 0 < measured.peak_mib < 1024


def test_a_wrong_digest_is_caught(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    bench_tus.make_data(data, MiB, 1)
    setup = bench_tus.Setup(tmp_path)
    with (
        bench_tus.running(bench_tus.start_spoolup, setup, s3=False) as server,
        pytest.raises(AssertionError, match="wrong sha256"),
    ):
        bench_tus.measure(server, bench_tus.Workload("one", 1, 0), data, ["0" * 64])
