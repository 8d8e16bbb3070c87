"""spoolup's benchmarks: ``python -m benchmarks [--quick] [NAME ...]`` (``make bench``).

Each ``benchmarks/bench_<name>.py`` module is one benchmark, found by name; see
``benchmarks/README.md`` for the interface a module provides.
"""
