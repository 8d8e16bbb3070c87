"""The framework benchmark keeps working: every app answers every case, as measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_frameworks
from benchmarks.bench_frameworks import MB, MiB, Sizes

pytestmark = pytest.mark.slow


def test_every_framework_app_answers_and_is_measured(tmp_path: Path) -> None:
    sizes = Sizes(backup=4 * MiB, junk=4 * MB, runs=1)
    results = {
        framework.name: bench_frameworks.measure(framework, sizes, tmp_path)
        for framework in bench_frameworks.FRAMEWORKS
    }
    for name, cases in results.items():
        native = cases["backup"]["native"][0]
        spoolup = cases["backup"]["spoolup"][0]
        # The native apps spool, then copy; spoolup keeps its temp file by rename.
        assert native.written / sizes.backup > 1.9, name
        assert 0.99 <= spoolup.written / sizes.backup < 1.05, name
        assert 0 < spoolup.peak_rss < 500 * MiB
        # The image (1.9 MB) is never written by spoolup: what the server wrote is noise
        # (logs, a page or two of its own), nowhere near the image's size.
        image = cases["image"]["spoolup"][0]
        assert image.written / image.sent < 0.1, name
        for kind in ("native", "spoolup"):
            junk = cases["junk"][kind][0]
            assert junk.status == 413, (name, kind)
            assert junk.app_read is not None
            if (name, kind) == ("Django ASGI", "native"):
                # Django's ASGI handler receives the whole body before any view runs.
                assert junk.app_read == junk.sent
            else:
                assert junk.app_read < 1 * MB, (name, kind)
    tables = bench_frameworks.tables(results, sizes)
    assert [len(t.rows) for t in tables] == [2 * len(results)] * 2
    assert not list(tmp_path.iterdir())
