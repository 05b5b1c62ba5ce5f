"""Helpers shared by the processor, worker and process tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float = 10.0, every: float = 0.02
) -> float:
    """Poll ``condition`` until true; returns the seconds it took. ``AssertionError`` when
    it is still false after ``within`` seconds (a generous deadline, never a fixed sleep)."""
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition still false after {within} s")
        await asyncio.sleep(every)
    return time.monotonic() - start
