"""Sizes and durations in words a person reads (``5.1 MB``, ``2 min 5 s``); no I/O."""

from __future__ import annotations

__all__ = ["format_duration", "format_size", "plural"]

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_size(size: float) -> str:
    """``size`` bytes in decimal units, three significant digits: ``5.1 MB``, ``980 kB``.

    The same rounding as the web page's, so the page, the CLI and the server's banner
    say the same number for the same file.
    """
    value = float(size)
    unit = 0
    while value >= 1000 and unit < len(_SIZE_UNITS) - 1:
        value /= 1000
        unit += 1
    if unit == 0:
        return f"{int(value)} B"
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {_SIZE_UNITS[unit]}"


def format_duration(seconds: float) -> str:
    """``seconds`` in the largest whole units that fit: ``45 s``, ``15 min``, ``7 d``."""
    whole = max(0, round(seconds))
    for unit, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if whole >= unit:
            big, rest = divmod(whole, unit)
            return f"{big} {name}" if rest == 0 else f"{big} {name} {format_duration(rest)}"
    return f"{whole} s"


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``: the count and the noun, in the number that fits."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
