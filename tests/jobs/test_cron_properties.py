"""Properties of the cron math, checked with hypothesis against a tiny independent matcher."""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from batchwork.jobs._cron import (
    is_wall_clock,
    next_tick,
    normalize_cron,
    plan_ticks,
    previous_ticks,
    ticks_between,
)

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
# Field bounds of a 6-field expression: second minute hour day-of-month month day-of-week.
BOUNDS = [(0, 59), (0, 59), (0, 23), (1, 28), (1, 12), (0, 6)]
# What ``*`` spans when matching (generated days stop at 28 so every month has them).
SPANS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


@st.composite
def field(draw: st.DrawFn, low: int, high: int) -> str:
    kind = draw(st.sampled_from(["*", "step", "value", "range", "list", "range_step"]))
    value = st.integers(low, high)
    if kind == "*":
        return "*"
    if kind == "step":
        return f"*/{draw(st.integers(1, high - low + 1))}"
    if kind == "value":
        return str(draw(value))
    if kind == "list":
        items = draw(st.lists(value, min_size=2, max_size=4, unique=True))
        return ",".join(map(str, items))
    a, b = sorted((draw(value), draw(value)))
    if kind == "range":
        return f"{a}-{b}"
    return f"{a}-{b}/{draw(st.integers(1, 5))}"


@st.composite
def expressions(draw: st.DrawFn, *, seconds: bool | None = None) -> str:
    with_seconds = draw(st.booleans()) if seconds is None else seconds
    fields = [draw(field(low, high)) for low, high in BOUNDS]
    return " ".join(fields if with_seconds else fields[1:])


def _values(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for term in text.split(","):
        span, _, step = term.partition("/")
        if span == "*":
            start, stop = low, high
        elif "-" in span:
            start, stop = map(int, span.split("-"))
        else:
            start = int(span)
            stop = high if step else start
        values.update(range(start, stop + 1, int(step or 1)))
    return values


@functools.cache
def _compiled(expression: str) -> tuple[list[set[int]], bool]:
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    sets = [_values(text, low, high) for text, (low, high) in zip(fields, SPANS, strict=True)]
    return sets, fields[3].startswith("*") or fields[5].startswith("*")


def matches(expression: str, wall: datetime) -> bool:
    """Vixie cron matching of a wall time, written apart from the code under test."""
    (second, minute, hour, dom, month, dow), days_and = _compiled(expression)
    if wall.second not in second or wall.minute not in minute or wall.hour not in hour:
        return False
    if wall.month not in month:
        return False
    dom_ok, dow_ok = wall.day in dom, (wall.weekday() + 1) % 7 in dow
    return (dom_ok and dow_ok) if days_and else (dom_ok or dow_ok)


def is_gap_end(tick: datetime, tz: tzinfo) -> bool:
    before = (tick - timedelta(seconds=1)).astimezone(tz).utcoffset()
    return before != tick.astimezone(tz).utcoffset()


instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(expressions(), st.sampled_from(ZONES), instants)
def test_ticks_strictly_increase_and_match(
    expression: str, zone_name: str, start: datetime
) -> None:
    expression = normalize_cron(expression)
    tz = ZoneInfo(zone_name)
    ticks = ticks_between(expression, zone_name, start, start + timedelta(days=400), 12)
    previous = start
    for tick in ticks:
        assert tick > previous
        assert tick.tzinfo is UTC
        wall = tick.astimezone(tz).replace(tzinfo=None)
        assert matches(expression, wall) or (is_wall_clock(expression) and is_gap_end(tick, tz))
        assert next_tick(expression, zone_name, previous) == tick
        previous = tick


def brute_force(expression: str, tz: tzinfo, start: datetime, end: datetime) -> list[datetime]:
    """Every instant in (start, end] whose wall time matches, with the DST rule applied."""
    step = timedelta(seconds=1 if len(expression.split()) == 6 else 60)
    instant = start.replace(second=0, microsecond=0)
    found: list[datetime] = []
    while instant <= end:
        wall = instant.astimezone(tz)
        if instant > start and matches(expression, wall.replace(tzinfo=None)):
            found.append(instant)
        instant += step
    if not is_wall_clock(expression):
        return found
    # Wall-clock rule: a repeated wall time runs at its first occurrence only.
    seen: set[datetime] = set()
    first: list[datetime] = []
    for tick in found:
        wall = tick.astimezone(tz).replace(tzinfo=None)
        if wall not in seen:
            seen.add(wall)
            first.append(tick)
    return first


@settings(max_examples=100, deadline=None)
@given(expressions(seconds=False), st.sampled_from(["UTC", "Asia/Kolkata"]), instants)
def test_ticks_are_exactly_the_matching_minutes(
    expression: str, zone_name: str, start: datetime
) -> None:
    expression = normalize_cron(expression)
    end = start + timedelta(hours=26)
    expected = brute_force(expression, ZoneInfo(zone_name), start, end)
    assert ticks_between(expression, zone_name, start, end) == expected


@settings(max_examples=80, deadline=None)
@given(
    expressions(seconds=False),
    st.sampled_from(["Europe/Paris", "America/New_York"]),
    st.sampled_from(
        [
            datetime(2026, 3, 28, 22, tzinfo=UTC),  # Paris spring forward
            datetime(2026, 10, 24, 21, tzinfo=UTC),  # Paris fall back
            datetime(2026, 3, 8, 4, tzinfo=UTC),  # New York spring forward
            datetime(2026, 11, 1, 3, tzinfo=UTC),  # New York fall back
        ]
    ),
)
def test_ticks_across_2026_transitions_follow_the_dst_rule(
    expression: str, zone_name: str, start: datetime
) -> None:
    expression = normalize_cron(expression)
    tz = ZoneInfo(zone_name)
    end = start + timedelta(hours=8)
    ticks = ticks_between(expression, zone_name, start, end)
    expected = brute_force(expression, tz, start, end)
    if is_wall_clock(expression):
        # Skipped wall times add (at most) one run at the end of the gap.
        assert [t for t in ticks if not is_gap_end(t, tz) or t in expected] == expected
        assert len([t for t in ticks if t not in expected]) <= 1
    else:
        assert ticks == expected


@settings(max_examples=100, deadline=None)
@given(expressions(), st.sampled_from(ZONES), instants, st.integers(1, 30))
def test_previous_ticks_mirror_ticks_between(
    expression: str, zone_name: str, start: datetime, hours: int
) -> None:
    expression = normalize_cron(expression)
    end = start + timedelta(hours=hours)
    forward = ticks_between(expression, zone_name, start, end, 50)
    backward = previous_ticks(expression, zone_name, end, start, 50)
    if len(forward) < 50 and len(backward) < 50:
        assert backward == forward[::-1]
    else:
        assert backward == sorted(backward, reverse=True)
        assert all(start < tick <= end for tick in backward)


per_minute = st.sampled_from(
    ["* * * * *", "*/5 * * * *", "0,20,40 * * * *", "0 * * * *", "*/10 9-17 * * MON-FRI"]
)


@settings(max_examples=200, deadline=None)
@given(
    per_minute,
    st.sampled_from(ZONES),
    instants,
    st.integers(0, 3 * 24 * 3600),
    st.none() | st.integers(0, 4 * 3600).map(float),
    st.integers(1, 6),
)
def test_plan_keeps_the_catch_up_rule(
    expression: str,
    zone_name: str,
    watermark: datetime,
    outage: int,
    margin: float | None,
    cap: int,
) -> None:
    now = watermark + timedelta(seconds=outage)
    plan = plan_ticks(expression, zone_name, watermark, now, margin, cap)
    due = ticks_between(expression, zone_name, watermark, now)
    assert plan.next_tick == next_tick(expression, zone_name, now)
    if not due:
        assert not plan.due
        assert (plan.run, plan.missed, plan.summary) == ((), (), None)
        return
    assert plan.watermark == due[-1]
    # Every due tick is accounted for exactly once: run, missed, or inside the summary.
    covered = list(plan.run) + list(plan.missed)
    if plan.summary is not None:
        span = [t for t in due if plan.summary.first <= t <= plan.summary.last]
        assert plan.summary.count == len(span)
        covered += span
    assert sorted(covered) == due
    assert len(set(covered)) == len(covered)
    assert list(plan.run) == sorted(plan.run)
    assert list(plan.missed) == sorted(plan.missed)
    # Bounded output whatever the outage.
    assert len(plan.run) <= cap
    assert len(plan.missed) + (plan.summary is not None) <= cap
    if margin is None:
        # Exactly one run after any outage: the newest due tick.
        assert plan.run == (due[-1],)
    else:
        limit = now - timedelta(seconds=margin)
        within = [t for t in due if t >= limit]
        assert plan.run == tuple(within[-cap:])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ZONES), instants, st.lists(st.integers(0, 7200), min_size=1, max_size=30))
def test_repeated_passes_fire_each_tick_once(
    zone_name: str, start: datetime, steps: list[int]
) -> None:
    # A worker stepping through time with passes at irregular moments: every tick after the
    # start is either run or missed exactly once over all passes.
    expression = "*/5 * * * *"
    watermark, now = start, start
    seen: list[datetime] = []
    for step in steps:
        now += timedelta(seconds=step)
        plan = plan_ticks(expression, zone_name, watermark, now, 600.0, 100)
        seen += sorted([*plan.run, *plan.missed])
        assert plan.summary is None
        watermark = plan.watermark or watermark
    assert seen == ticks_between(expression, zone_name, start, now)
    assert list(itertools.accumulate(seen, max)) == seen
