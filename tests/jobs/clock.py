"""A manual wall clock for tests of the jobs part: time moves only when a test says so.

Example::

    from tests.jobs.clock import ManualClock

    clock = ManualClock()
    start = clock.now()
    clock.advance(30)
    assert (clock.now() - start).total_seconds() == 30
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class ManualClock:
    """``now()`` returns an aware UTC datetime that changes only by ``advance``/``set``.

    Pass ``clock.now`` wherever batchwork takes a clock (``Store`` methods take ``now=``).
    """

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        """The current manual time."""
        return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move time forward (never back) and return the new now."""
        step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if step < timedelta(0):
            raise ValueError(f"a clock only moves forward, got {seconds!r}")
        self._now += step
        return self._now

    def set(self, at: datetime) -> datetime:
        """Jump to ``at`` (not earlier than now) and return it."""
        at = _aware(at)
        if at < self._now:
            raise ValueError(f"a clock only moves forward: {at} is before {self._now}")
        self._now = at
        return self._now


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"ManualClock needs an aware datetime, got {at!r}")
    return at.astimezone(UTC)
