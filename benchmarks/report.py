"""Tables for the benchmarks: printed to the terminal and written as Markdown.

A benchmark module returns :class:`Table` objects; ``python -m benchmarks`` prints them
and writes them, under a header describing the machine, to ``benchmarks/results/<name>.md``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["RESULTS", "Table", "machine_info", "render", "write_results"]

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Table:
    """A titled table of strings, with notes printed under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        """Append a row; it must have one cell per column."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def to_markdown(self) -> str:
        """The table as GitHub Markdown, title as a heading, numbers right-aligned."""
        widths = [
            max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
            for i, c in enumerate(self.columns)
        ]

        def line(cells: Sequence[str]) -> str:
            padded = (
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            )
            return "| " + " | ".join(padded) + " |"

        rule = "| " + " | ".join(
            "-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)
        )
        out = [f"### {self.title}", "", line(self.columns), rule + " |"]
        out += [line(row) for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        return "\n".join(out) + "\n"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    for row in text.splitlines():
        key, _, value = row.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine()


def machine_info(packages: Iterable[str] = ()) -> dict[str, str]:
    """CPU, core count, OS, Python and the versions of ``packages`` (``-`` if missing)."""
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{_cpu_model()} ({os.cpu_count()} logical cores)",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    for name in packages:
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = "-"
    return info


def render(title: str, tables: Iterable[Table], info: dict[str, str], command: str) -> str:
    """A Markdown document: title, how it was run, the machine, then the tables."""
    out = [f"# {title}", "", f"Command: `{command}`", ""]
    out += [f"- {key}: {value}" for key, value in info.items()]
    for table in tables:
        out += ["", table.to_markdown().rstrip("\n")]
    return "\n".join(out) + "\n"


def write_results(name: str, text: str, out_dir: Path = RESULTS) -> Path:
    """Write ``text`` to ``<out_dir>/<name>.md`` (via a temporary file) and return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
