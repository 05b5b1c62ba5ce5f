"""Pure runtime decisions: how one run ends, retry delays, error text (tables, hypothesis)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchwork.jobs._model import JobStatus
from batchwork.jobs._policy import (
    MAX_RETRY_DELAY,
    RunEnd,
    RunReport,
    decide,
    format_error,
    retry_delay,
    unknown_job_error,
)
from batchwork.jobs._signal import SignalReason

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _decide(report: RunReport, *, resumable: bool = False, attempts: int = 1, retries: int = 0):  # type: ignore[no-untyped-def]
    return decide(
        report,
        resumable=resumable,
        attempts=attempts,
        retries=retries,
        backoff=1.0,
        now=NOW,
        rng=random.Random(7),
    )


RETURNED = RunReport(RunEnd.RETURNED, value={"n": 1})
RAISED = RunReport(RunEnd.RAISED, error=ValueError("bad"))
STOPPED = RunReport(RunEnd.STOPPED)


@pytest.mark.parametrize(
    ("end", "reason", "resumable", "expected"),
    [
        (RETURNED, None, False, JobStatus.FINISHED),
        (RAISED, None, False, JobStatus.ERRORED),
        # a signal decides before the handler's own end
        (RETURNED, "cancelled", False, JobStatus.CANCELLED),
        (RAISED, "cancelled", True, JobStatus.CANCELLED),
        (STOPPED, "cancelled", False, JobStatus.CANCELLED),
        (RETURNED, "max_runtime", False, JobStatus.TIMED_OUT),
        (STOPPED, "max_runtime", True, JobStatus.TIMED_OUT),
        # shutdown: resumable pauses whatever happened; others end normally if in time
        (RETURNED, "shutdown", True, JobStatus.PAUSED),
        (STOPPED, "shutdown", True, JobStatus.PAUSED),
        (RETURNED, "shutdown", False, JobStatus.FINISHED),
        (RAISED, "shutdown", False, JobStatus.ERRORED),
        (STOPPED, "shutdown", False, JobStatus.ERRORED),
    ],
)
def test_status_table(
    end: RunReport, reason: SignalReason | None, resumable: bool, expected: JobStatus
) -> None:
    report = RunReport(end.end, reason=reason, value=end.value, error=end.error)
    assert _decide(report, resumable=resumable).status is expected


def test_lease_lost_writes_nothing() -> None:
    for end in (RETURNED, RAISED, STOPPED):
        report = RunReport(end.end, reason="lease_lost", value=end.value, error=end.error)
        assert _decide(report).write is False


def test_finished_keeps_the_result_as_json() -> None:
    decision = _decide(RETURNED)
    assert decision.result_json == '{"n":1}'
    assert decision.error is None


def test_a_result_json_cannot_hold_is_errored_saying_why() -> None:
    decision = _decide(RunReport(RunEnd.RETURNED, value={"at": object()}))
    assert decision.status is JobStatus.ERRORED
    assert decision.error is not None
    assert "result is not strict JSON" in decision.error
    assert "object" in decision.error


def test_interrupted_and_timed_out_texts() -> None:
    stopped = _decide(RunReport(RunEnd.STOPPED, reason="shutdown"))
    assert stopped.error is not None
    assert stopped.error.startswith("interrupted")
    timed = _decide(RunReport(RunEnd.STOPPED, reason="max_runtime", max_runtime=1.5))
    assert timed.error is not None
    assert "max_runtime of 1.5 s" in timed.error


@pytest.mark.parametrize(
    ("attempts", "retries", "expected"),
    [
        (1, 0, JobStatus.ERRORED),
        (1, 1, JobStatus.PENDING),
        (2, 1, JobStatus.ERRORED),
        (3, 3, JobStatus.PENDING),
        (4, 3, JobStatus.ERRORED),
    ],
)
def test_retries_until_the_last_attempt(attempts: int, retries: int, expected: JobStatus) -> None:
    decision = _decide(RAISED, attempts=attempts, retries=retries)
    assert decision.status is expected
    assert decision.error is not None
    assert decision.error.startswith("ValueError: bad")
    if expected is JobStatus.PENDING:
        assert decision.retry_at is not None
        delay = (decision.retry_at - NOW).total_seconds()
        nominal = 2.0 ** (attempts - 1)
        assert nominal / 2 <= delay < nominal
    else:
        assert decision.retry_at is None


def test_unknown_job_is_errored_naming_it() -> None:
    report = RunReport(RunEnd.NO_HANDLER, value=unknown_job_error("ghost", ["a", "b"]))
    decision = _decide(report, retries=5)
    assert decision.status is JobStatus.ERRORED
    assert decision.error is not None
    assert "'ghost'" in decision.error
    assert "a, b" in decision.error


@given(attempt=st.integers(1, 200), backoff=st.floats(0, 100), seed=st.integers(0, 2**32))
def test_retry_delay_is_jittered_exponential_and_capped(
    attempt: int, backoff: float, seed: int
) -> None:
    delay = retry_delay(attempt, backoff, rng=random.Random(seed))
    nominal = min(MAX_RETRY_DELAY, backoff * 2.0 ** (attempt - 1))
    assert nominal / 2 <= delay <= nominal


def test_retry_delay_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        retry_delay(0, 1.0)


def test_error_text_has_type_message_traceback_and_cause_chain() -> None:
    def inner() -> None:
        raise KeyError("missing")

    try:
        try:
            inner()
        except KeyError as exc:
            raise RuntimeError("could not load") from exc
    except RuntimeError as exc:
        text = format_error(exc)
    lines = text.splitlines()
    assert lines[0] == "RuntimeError: could not load"
    assert "Traceback (most recent call last):" in text
    assert "KeyError: 'missing'" in text
    assert "direct cause" in text
    assert "in inner" in text


def test_retry_at_is_later_than_now() -> None:
    decision = _decide(RAISED, retries=1)
    assert decision.retry_at is not None
    assert decision.retry_at > NOW
    assert decision.retry_at - NOW < timedelta(seconds=1)
