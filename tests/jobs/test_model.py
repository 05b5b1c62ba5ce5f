"""The job domain's pure rules: the transition table, ended statuses and strict JSON."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchwork.errors import PayloadError
from batchwork.jobs._model import (
    ACTIVE_STATUSES,
    ALLOWED_TRANSITIONS,
    ENDED_STATUSES,
    JobStatus,
    can_transition,
    dump_json,
    load_json,
)

S = JobStatus
# The whole table, written out by hand: a change to the rules must change this test too.
EXPECTED = {
    S.PENDING: {S.RUNNING, S.CANCELLED},
    S.PAUSED: {S.RUNNING, S.CANCELLED},
    S.RUNNING: {S.PENDING, S.PAUSED, S.FINISHED, S.ERRORED, S.CANCELLED, S.TIMED_OUT, S.CRASHED},
    S.FINISHED: {S.PENDING},
    S.ERRORED: {S.PENDING},
    S.CANCELLED: {S.PENDING},
    S.TIMED_OUT: {S.PENDING},
    S.CRASHED: {S.PENDING},
    S.SKIPPED: {S.PENDING},
    S.MISSED: {S.PENDING},
}


@pytest.mark.parametrize("old", list(JobStatus))
@pytest.mark.parametrize("new", list(JobStatus))
def test_transition_table(old: JobStatus, new: JobStatus) -> None:
    assert can_transition(old, new) is (new in EXPECTED[old])


def test_every_status_is_active_or_ended() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobStatus)
    assert set(JobStatus) == ACTIVE_STATUSES | ENDED_STATUSES
    assert not ACTIVE_STATUSES & ENDED_STATUSES
    assert [s for s in JobStatus if s.ended] == [s for s in JobStatus if s in ENDED_STATUSES]
    assert not JobStatus.PAUSED.ended
    assert JobStatus.SKIPPED.ended


def test_only_retry_leaves_an_ended_status() -> None:
    for status in ENDED_STATUSES:
        assert ALLOWED_TRANSITIONS[status] == {JobStatus.PENDING}
    for status in JobStatus:
        assert status not in ALLOWED_TRANSITIONS[status]  # no self-loops to "change"


def test_statuses_are_their_strings() -> None:
    assert JobStatus("timed_out") is JobStatus.TIMED_OUT
    assert f"{JobStatus.FINISHED}" == "finished"


# -- strict JSON ---------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@given(json_values)
def test_strict_json_round_trips(value: Any) -> None:
    assert load_json(dump_json(value)) == value


@given(json_values)
def test_tuples_come_back_as_lists(value: Any) -> None:
    assert load_json(dump_json((value, value))) == [value, value]


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (math.nan, "float"),
        ({"x": [1, math.inf]}, "float"),
        ({1: "a"}, "int"),
        ({"a": {None: 1}}, "NoneType"),
        ({"a": [{(1, 2): 1}]}, "tuple"),
        ({"when": object()}, "object"),
        ([b"bytes"], "bytes"),
        ({"s": {1, 2}}, "set"),
    ],
)
def test_strict_json_refuses_what_would_not_come_back(value: Any, named: str) -> None:
    with pytest.raises(PayloadError, match=named):
        dump_json(value)


def test_payload_error_names_what() -> None:
    with pytest.raises(PayloadError, match=r"^result is not strict JSON"):
        dump_json(math.nan, what="result")
    assert load_json(None) is None
