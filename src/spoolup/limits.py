"""Bounds on everything a client controls.

Every limit is finite by default; crossing one raises a 413 (:class:`RequestTooLarge` or
a subclass) naming the limit and its value, as soon as it is crossed.
"""

from __future__ import annotations

from dataclasses import dataclass

from spoolup.errors import RequestTooLarge

__all__ = ["Limits"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds for one request body. Frozen: derive variants with ``dataclasses.replace``.

    Attributes:
        max_body_size: bytes in the whole body (10 GiB).
        max_file_size: bytes in one file (10 GiB).
        max_files: file parts in one body (1,000).
        max_fields: non-file fields in one body (1,000).
        max_field_size: bytes in one non-file value (1 MiB).
        max_header_size: bytes in one part's header block (8 KiB).
        max_headers: header lines in one part (32).
        memory_threshold: bytes of one file kept in memory before it spools to disk (1 MiB).
    """

    max_body_size: int = 10 * GiB
    max_file_size: int = 10 * GiB
    max_files: int = 1000
    max_fields: int = 1000
    max_field_size: int = 1 * MiB
    max_header_size: int = 8 * KiB
    max_headers: int = 32
    memory_threshold: int = 1 * MiB

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                msg = f"Limits.{name} must be a non-negative int, not {value!r}"
                raise ValueError(msg)

    def check_body_size(self, size: int) -> None:
        """Raise :class:`RequestTooLarge` if ``size`` bytes of body cross ``max_body_size``."""
        if size > self.max_body_size:
            raise RequestTooLarge.for_limit("max_body_size", self.max_body_size, "request body")
