"""Shared helpers for the Batcher tests (a batch function that records its calls)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Call:
    """One call of a `Recorder`: when it started and which items it got."""

    at: float
    items: list[int]


@dataclass
class Recorder:
    """An async batch function answering ``answer(item)`` per item, after ``delay`` s."""

    answer: Callable[[int], object] = lambda item: item * 10
    delay: float = 0.0
    calls: list[Call] = field(default_factory=list)
    running: int = 0
    peak: int = 0

    async def __call__(self, items: list[int]) -> list[object]:
        self.calls.append(Call(asyncio.get_running_loop().time(), list(items)))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return [self.answer(item) for item in items]
        finally:
            self.running -= 1

    @property
    def batches(self) -> list[list[int]]:
        """The items of every call, in call order."""
        return [call.items for call in self.calls]

    @property
    def times(self) -> list[float]:
        """The loop time of every call, rounded to the microsecond."""
        return [round(call.at, 6) for call in self.calls]


def now() -> float:
    """The running loop's time, rounded to the microsecond (looptime is exact)."""
    return round(asyncio.get_running_loop().time(), 6)
