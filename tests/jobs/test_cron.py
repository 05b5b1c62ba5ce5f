"""Cron math: normalisation, ticks across DST, and the catch-up plan (pure, explicit now)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from batchwork.errors import InvalidCron
from batchwork.jobs._cron import (
    describe_cron,
    is_wall_clock,
    next_tick,
    normalize_cron,
    plan_ticks,
    previous_ticks,
    ticks_between,
    zone,
)
from batchwork.jobs._defs import CronDef


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, us, tzinfo=UTC)


def local(tz: str, y: int, m: int, d: int, hh: int, mm: int, *, fold: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


# -- normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("*/5 * * * *", "*/5 * * * *"),
        ("  0   9 * *   mon-fri ", "0 9 * * MON-FRI"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
        ("*/5 * * * * *", "*/5 * * * * *"),
        ("0 */5 * * * *", "*/5 * * * *"),  # a seconds field of 0 is the 5-field form
        ("30 0 12 * * *", "30 0 12 * * *"),
        ("0 0 12 ? * MON", "0 12 * * MON"),  # Quartz's "no specific value"
        ("0 0 L * *", "0 0 L * *"),
        ("0 0 LW * *", "0 0 LW * *"),
        ("0 0 * * 5L", "0 0 * * 5L"),
        ("0 0 * * mon#2", "0 0 * * MON#2"),
        ("0 0 1 jan,jul *", "0 0 1 JAN,JUL *"),
        ("0 0 * * 7", "0 0 * * 7"),
        ("5-5/2,7 * * * *", "5,7 * * * *"),  # a one-value range with a step is that value
        ("* * * * 0-0/1", "* * * * 0"),
    ],
)
def test_normalize_accepts(given: str, canonical: str) -> None:
    assert normalize_cron(given) == canonical


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * * *", "expected 5 fields"),
        ("0 0 0 * * * 2026", "got 7"),
        ("61 * * * *", "bad minute field '61' (allowed: 0-59)"),
        ("0 24 * * *", "bad hour field '24'"),
        ("0 0 32 * *", "bad day-of-month field '32'"),
        ("0 0 * 13 *", "bad month field '13'"),
        ("0 0 * * 8", "bad day-of-week field '8'"),
        ("60 * * * * *", "bad second field '60'"),
        ("*/0 * * * *", "bad minute field"),
        ("5-1 * * * *", "bad minute field"),
        ("1- * * * *", "bad minute field '1-'"),
        ("0 0 * * MON#6", "bad day-of-week field 'MON#6'"),
        ("0 0 * * MON#", "bad day-of-week field"),
        ("x * * * *", "bad minute field 'X'"),
        ("0 ? * * *", "'?' is only allowed in the day fields"),
        ("0 0 30 2 *", "bad day-of-month field '30'"),
        ("@reboot", "unknown alias '@reboot'"),
        ("@every 5m", "unknown alias"),
    ],
)
def test_normalize_refuses_naming_the_string_and_why(given: str, reason: str) -> None:
    with pytest.raises(InvalidCron) as caught:
        normalize_cron(given)
    assert caught.value.expression == given
    assert reason in caught.value.reason
    assert repr(given) in str(caught.value)


def test_normalize_refuses_a_non_string() -> None:
    with pytest.raises(InvalidCron, match="expected a string"):
        normalize_cron(5)  # type: ignore[arg-type]


def test_cron_def_normalises_at_construction() -> None:
    cron = CronDef("@hourly", lambda signal: None)
    assert cron.expression == "0 * * * *"
    with pytest.raises(InvalidCron, match="61"):
        CronDef("61 * * * *", lambda signal: None)


def test_zone_refuses_unknown_names() -> None:
    assert zone("UTC") is UTC
    assert zone("Europe/Paris") == ZoneInfo("Europe/Paris")
    with pytest.raises(ValueError, match="Mars/Olympus"):
        zone("Mars/Olympus")


@pytest.mark.parametrize(
    ("expression", "wall_clock"),
    [
        ("30 2 * * *", True),
        ("0 30 2 * * *", True),
        ("*/10 30 2 * * *", True),
        ("0 * * * *", False),
        ("*/5 * * * *", False),
        ("0 */2 * * *", False),
        ("*/10 2 * * *", False),
    ],
)
def test_wall_clock_rule(expression: str, wall_clock: bool) -> None:
    assert is_wall_clock(expression) is wall_clock


def test_describe_in_words() -> None:
    assert describe_cron("0 9 * * 1-5") == "At 09:00 on Monday through Friday"
    assert describe_cron("*/5 * * * * *") == "Every fifth second of every minute"
    assert describe_cron("0 0 * * 5L") == "At 00:00 on the last Friday of the month"


# -- next tick ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "tz", "after", "expected"),
    [
        ("*/5 * * * *", "UTC", utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 5)),
        ("*/5 * * * *", "UTC", utc(2026, 1, 1, 10, 4, 59, 999999), utc(2026, 1, 1, 10, 5)),
        ("*/5 * * * * *", "UTC", utc(2026, 1, 1, 10, 0, 3), utc(2026, 1, 1, 10, 0, 5)),
        ("0 9 * * *", "Europe/Paris", utc(2026, 1, 5, 9), utc(2026, 1, 6, 8)),
        ("0 9 * * *", "Europe/Paris", utc(2026, 7, 5, 9), utc(2026, 7, 6, 7)),
        ("0 9 * * *", "America/New_York", utc(2026, 1, 5, 15), utc(2026, 1, 6, 14)),
        ("0 0 L * *", "UTC", utc(2026, 2, 1), utc(2026, 2, 28)),
        ("0 0 LW * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 30)),  # Jan 31 2026 is a Saturday
        ("0 0 * * 5L", "UTC", utc(2026, 1, 1), utc(2026, 1, 30)),  # last Friday of January
        ("0 0 * * MON#2", "UTC", utc(2026, 1, 1), utc(2026, 1, 12)),
        ("0 0 1 1 *", "UTC", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("0 0 13 * 5", "UTC", utc(2026, 1, 1), utc(2026, 1, 2)),  # day-of-month OR weekday
    ],
)
def test_next_tick(expression: str, tz: str, after: datetime, expected: datetime) -> None:
    tick = next_tick(normalize_cron(expression), tz, after)
    assert tick == expected
    assert tick is not None
    assert tick.tzinfo is UTC


def test_next_tick_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_tick("* * * * *", "UTC", datetime(2026, 1, 1))


def test_ticks_between_is_half_open_and_capped() -> None:
    start = utc(2026, 1, 1, 10)
    ticks = ticks_between("*/15 * * * *", "UTC", start, start + timedelta(hours=1))
    assert ticks == [start + timedelta(minutes=m) for m in (15, 30, 45, 60)]
    assert ticks_between("*/15 * * * *", "UTC", start, start + timedelta(hours=1), 2) == ticks[:2]
    assert ticks_between("*/15 * * * *", "UTC", start, start + timedelta(hours=1), 0) == []


def test_previous_ticks_newest_first_and_inclusive_of_the_end() -> None:
    end = utc(2026, 1, 1, 10)
    assert previous_ticks("*/15 * * * *", "UTC", end, end - timedelta(minutes=40), 10) == [
        end,
        end - timedelta(minutes=15),
        end - timedelta(minutes=30),
    ]
    assert previous_ticks("*/15 * * * *", "UTC", end, end, 10) == []


# -- daylight saving time (2026) ------------------------------------------------------


def day(expression: str, tz: str, y: int, m: int, d: int) -> list[datetime]:
    """The ticks of one local calendar day, midnight included."""
    start = datetime(y, m, d, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    end = (datetime(y, m, d, tzinfo=ZoneInfo(tz)) + timedelta(days=1)).astimezone(UTC)
    expression = normalize_cron(expression)
    ticks = ticks_between(expression, tz, start - timedelta(microseconds=1), end)
    return [t for t in ticks if t < end]


def test_paris_spring_forward_runs_a_skipped_time_once_at_the_end_of_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    assert day("30 2 * * *", "Europe/Paris", 2026, 3, 29) == [utc(2026, 3, 29, 1, 0)]
    assert day("0 30 2 * * *", "Europe/Paris", 2026, 3, 29) == [utc(2026, 3, 29, 1, 0)]
    # Several skipped times collapse into that one run; later times are untouched.
    assert day("0,30 2,3 * * *", "Europe/Paris", 2026, 3, 29) == [
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 29, 1, 30),
    ]


def test_paris_fall_back_runs_a_repeated_time_once_at_its_first_occurrence() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    assert day("30 2 * * *", "Europe/Paris", 2026, 10, 25) == [utc(2026, 10, 25, 0, 30)]
    assert day("0 30 2 * * *", "Europe/Paris", 2026, 10, 25) == [utc(2026, 10, 25, 0, 30)]
    # The days around keep their usual instant.
    assert day("30 2 * * *", "Europe/Paris", 2026, 10, 26) == [utc(2026, 10, 26, 1, 30)]


def test_paris_interval_crons_follow_elapsed_time() -> None:
    hourly = day("0 * * * *", "Europe/Paris", 2026, 10, 25)
    assert len(hourly) == 25  # the day has 25 hours
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(hourly))
    spring = day("0 * * * *", "Europe/Paris", 2026, 3, 29)
    assert len(spring) == 23  # the day has 23 hours
    assert utc(2026, 3, 29, 1) in spring  # 03:00 CEST, right after the jump


def test_new_york_2026_transitions() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    assert day("30 2 * * *", "America/New_York", 2026, 3, 8) == [utc(2026, 3, 8, 7, 0)]
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    assert day("30 1 * * *", "America/New_York", 2026, 11, 1) == [utc(2026, 11, 1, 5, 30)]
    halves = day("*/30 * * * *", "America/New_York", 2026, 11, 1)
    assert utc(2026, 11, 1, 5, 30) in halves
    assert utc(2026, 11, 1, 6, 30) in halves


def test_next_tick_from_inside_a_repeated_hour() -> None:
    # At 02:15 CET (second pass), today's 02:30 has already run at 02:30 CEST.
    after = local("Europe/Paris", 2026, 10, 25, 2, 15, fold=1)
    assert next_tick("30 2 * * *", "Europe/Paris", after) == utc(2026, 10, 26, 1, 30)
    # ... and looking back from there finds it.
    assert previous_ticks("30 2 * * *", "Europe/Paris", after, after - timedelta(days=1), 1) == [
        utc(2026, 10, 25, 0, 30)
    ]


def test_previous_tick_from_after_the_gap() -> None:
    at = local("Europe/Paris", 2026, 3, 29, 3, 10)
    assert previous_ticks("30 2 * * *", "Europe/Paris", at, at - timedelta(days=1), 1) == [
        utc(2026, 3, 29, 1, 0)
    ]


# -- the catch-up plan -------------------------------------------------------------------

NOW = utc(2026, 6, 1, 12, 0)


def minutes(*offsets: int) -> tuple[datetime, ...]:
    return tuple(NOW + timedelta(minutes=m) for m in offsets)


def test_plan_nothing_due() -> None:
    plan = plan_ticks("*/5 * * * *", "UTC", NOW, NOW + timedelta(minutes=3), None)
    assert (plan.run, plan.missed, plan.summary, plan.watermark) == ((), (), None, None)
    assert not plan.due
    assert plan.next_tick == NOW + timedelta(minutes=5)


def test_plan_on_time_tick_runs() -> None:
    plan = plan_ticks("*/5 * * * *", "UTC", NOW - timedelta(minutes=5), NOW, None)
    assert plan.run == (NOW,)
    assert plan.missed == ()
    assert plan.watermark == NOW


def test_plan_without_margin_runs_only_the_newest_after_an_outage() -> None:
    plan = plan_ticks(
        "*/5 * * * *", "UTC", NOW - timedelta(minutes=21), NOW + timedelta(minutes=2), None
    )
    assert plan.run == minutes(0)
    assert plan.missed == minutes(-20, -15, -10, -5)
    assert plan.watermark == NOW
    assert plan.next_tick == NOW + timedelta(minutes=5)


def test_plan_with_margin_runs_each_tick_within_it() -> None:
    now = NOW + timedelta(minutes=2)
    plan = plan_ticks("*/5 * * * *", "UTC", NOW - timedelta(minutes=21), now, 420)
    assert plan.run == minutes(-5, 0)  # 7 and 2 minutes old
    assert plan.missed == minutes(-20, -15, -10)


def test_plan_with_margin_misses_everything_too_old() -> None:
    now = NOW + timedelta(minutes=3)
    plan = plan_ticks("*/5 * * * *", "UTC", NOW - timedelta(minutes=1), now, 120)
    assert plan.run == ()
    assert plan.missed == minutes(0)
    assert plan.watermark == NOW


def test_plan_margin_bound_is_inclusive() -> None:
    plan = plan_ticks(
        "*/5 * * * *", "UTC", NOW - timedelta(minutes=1), NOW + timedelta(seconds=120), 120
    )
    assert plan.run == (NOW,)


def test_plan_summarises_missed_ticks_over_the_cap() -> None:
    # An hour down for a per-minute cron, cap 5: 1 run, 4 own records, 1 summary for 55.
    plan = plan_ticks("* * * * *", "UTC", NOW - timedelta(hours=1), NOW, None, cap=5)
    assert plan.run == minutes(0)
    assert plan.missed == minutes(-4, -3, -2, -1)
    assert plan.summary is not None
    assert plan.summary.first == NOW - timedelta(minutes=59)
    assert plan.summary.last == NOW - timedelta(minutes=5)
    assert plan.summary.count == 55


def test_plan_cap_of_one_keeps_only_a_summary() -> None:
    plan = plan_ticks("* * * * *", "UTC", NOW - timedelta(minutes=10), NOW, None, cap=1)
    assert plan.run == minutes(0)
    assert plan.missed == ()
    assert plan.summary is not None
    assert plan.summary.count == 9


def test_plan_summary_of_a_huge_outage_is_not_counted() -> None:
    # A per-second cron down for 4 hours: 14,399 missed ticks, more than the count budget.
    plan = plan_ticks("* * * * * *", "UTC", NOW - timedelta(hours=4), NOW, None)
    assert len(plan.run) == 1
    assert len(plan.missed) == 99
    assert plan.summary is not None
    assert plan.summary.count is None
    assert plan.summary.first == NOW - timedelta(hours=4) + timedelta(seconds=1)
    assert plan.summary.last == NOW - timedelta(seconds=100)


def test_plan_caps_runs_within_a_wide_margin() -> None:
    plan = plan_ticks("* * * * * *", "UTC", NOW - timedelta(minutes=10), NOW, 3600, cap=10)
    assert len(plan.run) == 10
    assert plan.run[-1] == NOW
    assert len(plan.missed) == 9
    assert plan.summary is not None
    assert plan.summary.count == 600 - 10 - 9


def test_plan_with_a_watermark_ahead_of_now() -> None:
    # Another host with a clock ahead already fired; nothing is due here.
    plan = plan_ticks("*/5 * * * *", "UTC", NOW + timedelta(minutes=5), NOW, None)
    assert not plan.due
    assert plan.next_tick == NOW + timedelta(minutes=10)


def test_plan_refuses_a_cap_below_one() -> None:
    with pytest.raises(ValueError, match="cap"):
        plan_ticks("* * * * *", "UTC", NOW, NOW, None, cap=0)


def test_plan_across_the_paris_fall_back_runs_the_repeated_time_once() -> None:
    watermark = utc(2026, 10, 24, 12)
    plan = plan_ticks("30 2 * * *", "Europe/Paris", watermark, utc(2026, 10, 25, 3), None)
    assert plan.run == (utc(2026, 10, 25, 0, 30),)
    assert plan.missed == ()


def test_docs_examples_run() -> None:
    import doctest
    from pathlib import Path

    docs = Path(__file__).parents[2] / "docs" / "crons.md"
    result = doctest.testfile(str(docs), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2
    assert result.failed == 0
