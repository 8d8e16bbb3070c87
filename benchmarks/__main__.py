"""Run benchmarks by name: ``python -m benchmarks [--quick] [--out DIR] [NAME ...]``.

A benchmark is a module ``benchmarks/bench_<name>.py`` that provides
``run(quick: bool) -> list[Table]``, and optionally ``TITLE`` (a heading) and ``PACKAGES``
(distributions whose versions go into the results). With no name, every benchmark runs,
in alphabetical order. Each one's tables are printed and written to
``<out>/<name>.md`` (``<name>-quick.md`` with ``--quick``, so that a smoke run never
overwrites real numbers).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import RESULTS, machine_info, render, write_results

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """The names of the benchmarks in this package, sorted."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the benchmarks, print and write their tables."""
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(names)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}")
    command = shlex.join(["python", "-m", "benchmarks", *(argv or sys.argv[1:])])
    for name in args.names or names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        tables = module.run(args.quick)
        elapsed = time.perf_counter() - started
        info = machine_info(getattr(module, "PACKAGES", ()))
        info["run time"] = f"{elapsed:.0f} s"
        text = render(getattr(module, "TITLE", name), tables, info, command)
        print(text, flush=True)
        path = write_results(f"{name}-quick" if args.quick else name, text, args.out)
        print(f"written to {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
