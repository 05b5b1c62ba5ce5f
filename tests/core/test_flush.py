"""The pure flush decision: tables and properties, no event loop."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchwork._flush import Decision, FlushReason, decide


@dataclass(frozen=True)
class Limits:
    max_size: int = 10
    max_wait: float = 0.05
    min_size: int | None = None


SIZE, MIN, AGE = FlushReason.SIZE, FlushReason.MIN_SIZE, FlushReason.AGE


@pytest.mark.parametrize(
    ("pending", "oldest_at", "now", "limits", "expected"),
    [
        (0, 0.0, 100.0, Limits(), None),
        (1, 1.0, 1.0, Limits(), 1.05),
        (1, 1.0, 1.04, Limits(), 1.05),
        (1, 1.0, 1.05, Limits(), AGE),
        (1, 1.0, 7.0, Limits(), AGE),
        (9, 1.0, 1.0, Limits(), 1.05),
        (10, 1.0, 1.0, Limits(), SIZE),
        (25, 1.0, 1.0, Limits(), SIZE),
        (3, 1.0, 1.0, Limits(min_size=3), MIN),
        (2, 1.0, 1.0, Limits(min_size=3), 1.05),
        (2, 1.0, 2.0, Limits(min_size=3), AGE),
        (10, 1.0, 1.0, Limits(min_size=3), SIZE),
        (1, 1.0, 1.0, Limits(max_size=1), SIZE),
        (1, 1.0, 1.0, Limits(max_wait=0.0), AGE),
        (5, 2.0, 2.0, Limits(max_wait=0.0, min_size=8), AGE),
    ],
)
def test_decision_table(
    pending: int, oldest_at: float, now: float, limits: Limits, expected: Decision
) -> None:
    assert decide(pending, oldest_at, now, limits) == expected


@pytest.mark.parametrize("reason", [FlushReason.FLUSH, FlushReason.CLOSE])
def test_forced_flush_takes_anything_pending(reason: FlushReason) -> None:
    assert decide(1, 5.0, 5.0, Limits(min_size=5, max_wait=60), forced=reason) is reason
    assert decide(0, 5.0, 5.0, Limits(), forced=reason) is None


limits_strategy = st.builds(
    Limits,
    max_size=st.integers(1, 1000),
    max_wait=st.floats(0, 100, allow_nan=False),
    min_size=st.none() | st.integers(1, 1000),
).filter(lambda limits: limits.min_size is None or limits.min_size <= limits.max_size)


@given(
    pending=st.integers(0, 2000),
    oldest_at=st.floats(0, 1e6, allow_nan=False),
    elapsed=st.floats(0, 1e3, allow_nan=False),
    limits=limits_strategy,
)
def test_decision_properties(
    pending: int, oldest_at: float, elapsed: float, limits: Limits
) -> None:
    now = oldest_at + elapsed
    decision = decide(pending, oldest_at, now, limits)
    if pending == 0:
        assert decision is None
    elif isinstance(decision, float):
        # Waiting is only allowed below every size threshold, and never past the deadline.
        assert pending < limits.max_size
        assert limits.min_size is None or pending < limits.min_size
        assert now < decision == oldest_at + limits.max_wait
    else:
        assert decision in (SIZE, MIN, AGE)
        if decision is AGE:
            assert now >= oldest_at + limits.max_wait
