"""The cluster benchmark's tables from known measurements (the run itself takes minutes)."""

from __future__ import annotations

from benchmarks.bench_cluster import FULL, Measure, MiB, tables


def measure(label: str, seconds: float, servers: int) -> Measure:
    return Measure(
        label=label,
        seconds=seconds,
        times=[seconds * 0.5, seconds],
        server_cpu=[2.0 / servers] * servers,
        store_cpu=4.0,
        balancer_cpu=0.0 if "direct" in label else 0.5,
        client_cpu=0.25,
        rss=[100 * MiB] * servers,
        base_rss=[60 * MiB] * servers,
        requests={"PUT": 3.0 * 16, "POST": 2.0 * 16},
        uploads=16,
        size=16 * MiB,
    )


def test_tables_compare_each_setup_with_one_server_behind_haproxy() -> None:
    measures = [
        measure("1 server, direct", 8.0, 1),
        measure("1 server behind HAProxy", 10.0, 1),
        measure("3 servers behind HAProxy", 5.0, 3),
    ]
    throughput, cpu, memory, tus = tables(measures, ({"PUT": 8.0, "GET": 4.0}, 4), FULL)
    ratios = [row[2] for row in throughput.rows]
    assert ratios == ["1.25x", "1.00x", "2.00x"]
    assert "1.25x the direct time" in throughput.notes[0]
    assert cpu.rows[2][2] == " / ".join(["2.5"] * 3)  # 2/3 CPU s over 0.268 GB
    assert memory.rows[0][3] == "2.5"  # 40 MiB grown over 16 uploads
    assert memory.rows[0][4] == "POST 2.0, PUT 3.0"
    assert tus.rows == [["4", "4", "GET 1.0, PUT 2.0", "3.0"]]
