"""Backpressure for a `Batcher`: how many items wait to be sent, and who waits for room."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import Callable

UNBOUNDED = sys.maxsize


class Room:
    """Items accepted but not yet handed to the batch function, bounded by ``limit``.

    ``limit`` is the Batcher's ``max_pending`` (``None``: unbounded). Callers that find
    no room wait in arrival order; a place freed for a waiter is reserved for it, so a
    newcomer cannot take it first, and a waiter cancelled after its wake passes it on.
    ``changed`` is called whenever the count drops (``close`` and ``flush`` listen).
    """

    __slots__ = ("changed", "limit", "pending", "reserved", "waiters")

    def __init__(self, limit: int | None, changed: Callable[[], None]) -> None:
        self.limit = limit
        self.changed = changed
        self.pending = 0
        self.reserved = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def fits(self) -> bool:
        """Whether one more item may enter now without waiting."""
        limit = self.limit
        return limit is None or (not self.waiters and self.pending + self.reserved < limit)

    def free(self) -> int:
        """How many items may enter now (0 while others wait in line)."""
        if self.limit is None:
            return UNBOUNDED
        if self.waiters:
            return 0
        return max(0, self.limit - self.pending - self.reserved)

    async def wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait in line until one item fits; its place is reserved until this returns."""
        fut: asyncio.Future[None] = loop.create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.reserved -= 1  # woken, then cancelled: pass the place on
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            self.freed()
            raise
        self.reserved -= 1

    def freed(self) -> None:
        """Items left the count: wake as many waiters as now fit."""
        limit = self.limit
        if limit is not None:
            waiters = self.waiters
            while waiters and self.pending + self.reserved < limit:
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_result(None)
                    self.reserved += 1
        self.changed()

    def fail_waiters(self, error: BaseException) -> None:
        """Every waiter gets ``error`` (the batcher closed without draining)."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_exception(error)

    @property
    def idle(self) -> bool:
        """Nothing pending and nobody waiting for room."""
        return not (self.pending or self.waiters or self.reserved)
