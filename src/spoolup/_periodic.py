"""One loop for background jobs (sweeps) that must outlive the failures of what they sweep."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["repeat"]

MAX_BACKOFF = 3600.0
"""The longest pause after failures, unless the interval itself is longer."""


async def repeat(
    job: Callable[[], Awaitable[object]],
    interval: float,
    *,
    what: str,
    logger: logging.Logger,
    first_delay: float = 0.0,
) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled; never stops on its errors.

    A failure is logged (with its traceback the first time in a row) and the pause
    doubles after each failure in a row, up to ``MAX_BACKOFF`` seconds (or
    ``interval`` when that is longer); one success brings it back to ``interval``.
    """
    failures = 0
    await asyncio.sleep(first_delay)
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            delay = min(interval * 2**failures, max(MAX_BACKOFF, interval))
            logger.warning(
                "%s failed (%s); trying again in %.1f s",
                what,
                exc,
                delay,
                exc_info=failures == 1,
            )
        else:
            failures = 0
            delay = interval
        await asyncio.sleep(delay)
