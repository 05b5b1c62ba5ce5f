"""The pure "flush now or wake at t" decision of one key's queue.

Kept apart from the event loop so that every timing rule is a table test: the caller
passes ``now`` and acts on the answer (start a batch, arm a timer, or do nothing).
"""

from __future__ import annotations

import enum
from typing import Protocol


class FlushReason(enum.Enum):
    """Why a batch left its queue (``BatchInfo.reason`` holds the value)."""

    SIZE = "size"
    """The queue held ``max_size`` items."""
    MIN_SIZE = "min_size"
    """The queue held ``min_size`` items (greedy mode)."""
    AGE = "age"
    """The oldest pending item was ``max_wait`` old (or a loop tick passed, for 0)."""
    FLUSH = "flush"
    """``flush()`` asked for it."""
    CLOSE = "close"
    """``close()`` drained it."""


class FlushLimits(Protocol):
    """The three settings the decision reads (a key's resolved configuration)."""

    @property
    def max_size(self) -> int: ...
    @property
    def max_wait(self) -> float: ...
    @property
    def min_size(self) -> int | None: ...


Decision = FlushReason | float | None
"""A reason: flush one batch now. A float: wake at that loop time. ``None``: idle."""


def decide(
    pending: int,
    oldest_at: float,
    now: float,
    limits: FlushLimits,
    forced: FlushReason | None = None,
) -> Decision:
    """Decide what one key's queue should do at loop time ``now``.

    ``pending`` counts live items waiting; ``oldest_at`` is the loop time the oldest of
    them arrived. ``forced`` (``FLUSH`` or ``CLOSE``) flushes whatever is pending.

    Example::

        decide(3, oldest_at=1.0, now=1.02, limits=cfg)  # 1.05 when max_wait is 0.05
    """
    if pending <= 0:
        return None
    if forced is not None:
        return forced
    if pending >= limits.max_size:
        return FlushReason.SIZE
    min_size = limits.min_size
    if min_size is not None and pending >= min_size:
        return FlushReason.MIN_SIZE
    due = oldest_at + limits.max_wait
    if now >= due:
        return FlushReason.AGE
    return due
