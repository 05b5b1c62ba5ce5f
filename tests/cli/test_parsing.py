"""The CLI's value parsers and formatters (pure, no process, no store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from batchwork.cli._app import (
    UsageError,
    parse_duration,
    parse_instant,
    parse_job_id,
    parse_payload,
    parse_tags,
)
from batchwork.cli._render import ago, dumps, first_line, span, to_jsonable
from batchwork.jobs import JobStatus

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "-5m", "5y", "m5"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="duration must look like"):
        parse_duration(text)


def test_parse_instant_relative_naive_and_offset() -> None:
    assert parse_instant("+10m", now=NOW) == NOW + timedelta(minutes=10)
    assert parse_instant("2026-12-01T08:00:00", now=NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    paris = parse_instant("2026-12-01T08:00:00+01:00", now=NOW)
    assert paris == datetime(2026, 12, 1, 7, tzinfo=UTC)
    assert paris.tzinfo == UTC
    assert parse_instant("2026-12-01T08:00:00Z", now=NOW).tzinfo == UTC
    with pytest.raises(UsageError, match="ISO 8601"):
        parse_instant("next tuesday", now=NOW)


def test_parse_payload_ids_and_tags() -> None:
    assert parse_payload(None) is None
    assert parse_payload('{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_payload("{'a': 1}")
    assert parse_job_id("42") == 42
    with pytest.raises(UsageError, match="positive integer"):
        parse_job_id("-1")
    assert parse_tags(None) is None
    assert parse_tags("gpu, etl,") == ["gpu", "etl"]


def test_to_jsonable_and_human_formats() -> None:
    value = {"at": NOW, "status": JobStatus.FINISHED, "ids": (1, 2), "wait": timedelta(seconds=3)}
    assert json.loads(dumps(value)) == {
        "at": "2026-11-22T12:00:00+00:00",
        "status": "finished",
        "ids": [1, 2],
        "wait": 3.0,
    }
    assert to_jsonable({("a", JobStatus.PENDING): 1}) == {"a/pending": 1}
    assert [span(s) for s in (0.25, 12, 185, 7800, 200_000)] == [
        "0.25s", "12s", "3m 05s", "2h 10m", "2d 7h",
    ]  # fmt: skip
    assert ago(NOW - timedelta(seconds=4), now=NOW) == "4.00s ago"
    assert ago(NOW + timedelta(hours=2), now=NOW) == "in 2h 00m"
    assert ago(None, now=NOW) == "-"
    other = datetime(2026, 11, 22, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert ago(other, now=NOW) == "0.00s ago"
    assert first_line("Boom: x\nTraceback...", 60) == "Boom: x"
    assert first_line("y" * 80, 10) == "y" * 9 + "…"
