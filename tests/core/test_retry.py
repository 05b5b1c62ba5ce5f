"""Retry: the pure backoff math in tables and properties, and option validation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchwork import Retry
from batchwork._retry import backoff_delay
from batchwork.errors import BatchTimeout


@pytest.mark.parametrize(
    ("retry", "backoff", "max_backoff", "expected"),
    [
        (1, 0.1, 10.0, 0.1),
        (2, 0.1, 10.0, 0.2),
        (3, 0.1, 10.0, 0.4),
        (4, 0.1, 10.0, 0.8),
        (8, 0.1, 10.0, 10.0),
        (5000, 0.1, 10.0, 10.0),
        (3, 0.0, 10.0, 0.0),
        (1, 5.0, 2.0, 2.0),
    ],
)
def test_delay_without_jitter(
    retry: int, backoff: float, max_backoff: float, expected: float
) -> None:
    delay = backoff_delay(retry, backoff=backoff, max_backoff=max_backoff, jitter=False)
    assert delay == pytest.approx(expected)
    policy = Retry(backoff=backoff, max_backoff=max_backoff, jitter=False)
    assert policy.delay(retry) == pytest.approx(expected)


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    first = [Retry().delay(k, random.Random(7)) for k in range(1, 6)]
    second = [Retry().delay(k, random.Random(7)) for k in range(1, 6)]
    assert first == second


@given(
    retry=st.integers(1, 200),
    backoff=st.floats(0, 100, allow_nan=False),
    max_backoff=st.floats(0, 1000, allow_nan=False),
    seed=st.integers(0, 2**32),
)
def test_jittered_delay_stays_between_half_and_the_nominal_delay(
    retry: int, backoff: float, max_backoff: float, seed: int
) -> None:
    nominal = backoff_delay(retry, backoff=backoff, max_backoff=max_backoff, jitter=False)
    jittered = backoff_delay(
        retry, backoff=backoff, max_backoff=max_backoff, jitter=True, rng=random.Random(seed)
    )
    assert nominal / 2 <= jittered <= nominal
    assert nominal <= max_backoff


@pytest.mark.parametrize(
    ("attempts", "exc", "attempt", "expected"),
    [
        (3, OSError(), 1, True),
        (3, OSError(), 2, True),
        (3, OSError(), 3, False),
        (1, OSError(), 1, False),
        (3, BatchTimeout("slow"), 1, True),
        (3, KeyboardInterrupt(), 1, False),
    ],
)
def test_should_retry(attempts: int, exc: BaseException, attempt: int, expected: bool) -> None:
    assert Retry(attempts=attempts).should_retry(exc, attempt) is expected


def test_on_accepts_a_single_class() -> None:
    retry = Retry(on=ConnectionError)  # type: ignore[arg-type]
    assert retry.on == (ConnectionError,)
    assert not retry.should_retry(ValueError(), 1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"attempts": 0}, "attempts"),
        ({"backoff": -1}, "backoff"),
        ({"max_backoff": -1}, "max_backoff"),
        ({"on": (ValueError, "nope")}, "on"),
    ],
)
def test_invalid_retry_options(options: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Retry(**options)  # type: ignore[arg-type]


def test_retry_number_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retry"):
        backoff_delay(0, backoff=1, max_backoff=1, jitter=False)
