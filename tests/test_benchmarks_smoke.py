"""The parser benchmark keeps working: tiny sizes, one run, no timing asserted.

What is asserted is what makes the benchmark's numbers mean something: every parser
and the ceiling scan saw every part and every byte of every workload (a known peer bug
excepted, and reported in the table), and the command line writes its table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_parser, workloads
from benchmarks.__main__ import available, main
from benchmarks.report import Table, machine_info, render
from benchmarks.workloads import KiB

TINY = bench_parser.Sizes(
    big_file=64 * KiB,
    files=8,
    fields=16,
    near_miss=16 * KiB,
    hostile=4 * KiB,
    repeat=1,
    budget=0.0,
)


def test_every_parser_sees_every_part_and_byte_of_every_workload() -> None:
    throughput, small, large = bench_parser.collect(TINY)
    results = [*throughput, *small, *large]
    workload_names = {r.workload.name for r in results}
    assert workload_names == {
        "big_file",
        "many_files",
        "many_fields",
        "near_miss_file",
        "crlf_flood",
        "near_miss_flood",
        "header_flood",
        "byte_chunks",
    }
    assert len(throughput) == 4 * len(bench_parser.PARSERS)
    assert len(small) == len(large) == 4 * len(bench_parser.PARSERS)
    failed = {(r.parser, r.workload.name): r.error for r in results if r.error is not None}
    assert set(failed) <= set(bench_parser.KNOWN_FAILURES), failed
    for r in results:
        if r.error is None:
            assert r.seconds is not None
            assert r.seconds > 0
            assert r.runs == 1


def test_a_parser_that_misses_bytes_is_reported_not_timed() -> None:
    w = workloads.many_files(2, 10)

    def lazy(_: workloads.Workload) -> tuple[int, int]:
        return 2, 19

    def broken(_: workloads.Workload) -> tuple[int, int]:
        raise RuntimeError("boom")

    missed = bench_parser.measure("lazy", lazy, w, 3, 1.0)
    assert missed.seconds is None
    assert missed.mb_per_s is None
    assert missed.error == "saw 2 parts / 19 bytes, not 2 / 20"
    crashed = bench_parser.measure("broken", broken, w, 3, 1.0)
    assert crashed.error == "RuntimeError: boom"
    table = bench_parser.throughput_table([missed, crashed])
    assert table.rows[0][1] == "wrong"
    assert table.rows[1][1] == "error"
    assert table.rows[-1] == ["spoolup / fastest peer", "-"]


def test_the_ceiling_scan_counts_delimiters_across_chunk_edges() -> None:
    w = workloads.many_files(5, 100)
    for size in (1, 2, 7, 64, 1 << 20):
        assert bench_parser.scan_ceiling(w.rechunk(size)) == (5, 500)
    cut = (b"".join(w.chunks)[:300],)
    short = workloads.Workload("short", "", cut, w.parts, w.data_bytes)
    with pytest.raises(RuntimeError, match="ceiling scan found 2 delimiters, not 6"):
        bench_parser.scan_ceiling(short)


def test_workloads_are_deterministic_and_hold_no_boundary() -> None:
    assert workloads.big_file(4 * KiB).chunks == workloads.big_file(4 * KiB).chunks
    flood = workloads.near_misses(10 * KiB)
    assert len(flood) == 10 * KiB
    assert b"--" + workloads.BOUNDARY not in flood
    with pytest.raises(ValueError, match="contains the boundary"):
        workloads.build("bad", "", [workloads.Part("x", b"--" + workloads.BOUNDARY)])


def test_command_line_runs_the_quick_benchmark_and_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_parser, "QUICK", TINY)
    assert "parser" in available()
    assert main(["parser", "--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "parser-quick.md").read_text(encoding="utf-8")
    assert text in capsys.readouterr().out
    for name in bench_parser.PARSERS:
        assert f"| {name} " in text
    assert "spoolup / fastest peer" in text
    assert "python: CPython 3." in text
    assert not list(tmp_path.glob("*.tmp"))


def test_command_line_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nonesuch"])
    assert "unknown benchmark nonesuch" in capsys.readouterr().err


def test_table_rendering() -> None:
    table = Table("T", ["name", "value"], notes=["a note"])
    table.add("x", "1")
    with pytest.raises(ValueError, match="2 columns"):
        table.add("only one")
    assert table.to_markdown() == (
        "### T\n\n| name | value |\n| ---- | ----: |\n| x    |     1 |\n\n- a note\n"
    )
    assert Table("E", ["a"]).to_markdown() == "### E\n\n| a |\n| - |\n"
    info = machine_info(["pytest", "no-such-distribution"])
    assert info["no-such-distribution"] == "-"
    doc = render("Title", [table], info, "python -m benchmarks")
    assert doc.startswith("# Title\n\nCommand: `python -m benchmarks`\n")


@pytest.mark.slow
def test_load_benchmark_measures_real_uploads() -> None:
    from benchmarks import bench_load

    tiny = bench_load.Sizes(uploads=4, upload_size=256 * KiB, slow=50, patch_size=64 * 1024 * KiB)
    uploads = Table("u", ["run", "bytes", "failed", "MB/s", "vs one alone", "peak server RSS"])
    bench_load.measure_uploads(tiny, uploads)
    assert [row[2] for row in uploads.rows] == ["0", "0"]  # no upload failed, every sha256 right
    patch = Table("p", ["upload", "sha256 right", "MB/s", "idle server RSS", "RSS growth"])
    bench_load.measure_large_patch(tiny, patch)
    assert patch.rows[0][1] == "yes"


def test_receive_fresh_process_measurement_runs() -> None:
    import json
    import subprocess
    import sys

    from benchmarks import bench_receive

    done = subprocess.run(
        [sys.executable, "-c", bench_receive.FRESH_SCRIPT, "spoolup", "many_fields", "20", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 < result["best"] <= result["median"]
