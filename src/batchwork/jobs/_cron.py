"""Cron math: parse and normalise expressions, compute ticks, decide what a pass fires.

Pure and I/O-free: every function takes the instants it needs (``after``, ``now``) from its
caller, so each rule is tested with plain tables and ``hypothesis``. The parser underneath
is cronsim; batchwork normalises expressions itself (aliases, ``?``, a redundant ``0``
seconds field) and owns the time-zone rules, so a change of parser changes nothing here.

Time zones. Ticks are computed on the wall clock of the cron's IANA zone and returned as
aware UTC datetimes. Two kinds of expression behave differently across a DST change:

* **wall-clock** expressions name a fixed minute *and* hour (neither field starts with
  ``*``), like ``30 2 * * *``: on the fall-back day the repeated wall time runs once, at its
  first occurrence (daylight time); a wall time that the spring-forward jump skips runs
  once, at the end of the gap (``02:30`` in Paris on 2026-03-29 runs at ``03:00`` CEST).
  Several skipped times of one day collapse into that single run.
* **interval** expressions (``*/5 * * * *``, ``0 * * * *``, anything with ``*`` at the
  start of the minute or hour field) follow elapsed time: every matching instant of the
  local clock, so an hourly cron runs twice at ``02:00`` on the fall-back day (an hour
  apart) and not at all at the skipped ``02:00``.

This is Debian cron's rule, which cronsim also follows for 5-field expressions; here it
applies to 6-field ones too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from batchwork.errors import InvalidCron

__all__ = [
    "ALIASES",
    "DEFAULT_MISSED_CAP",
    "MissedSpan",
    "TickPlan",
    "describe_cron",
    "is_wall_clock",
    "next_tick",
    "normalize_cron",
    "plan_ticks",
    "previous_ticks",
    "ticks_between",
    "zone",
]


ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# At most this many missed records (summary included) and this many runs per cron and
# pass: a per-second cron found after a day's outage writes ~100 rows, not 86,400.
DEFAULT_MISSED_CAP = 100

# Counting the ticks a summary stands for stops here; beyond it the count is unknown.
_COUNT_BUDGET = 10_000

_FIELDS_5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELDS_6 = ("second", *_FIELDS_5)
_ALLOWED = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L, LW",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday), 5L, MON#2",
}
_FIELD_CHARS = re.compile(r"^[0-9A-Z*/,#?\-]+$")
# A probe instant for validation; any fixed date works, this one keeps it deterministic.
_PROBE = datetime(2000, 1, 1)


def normalize_cron(expression: str) -> str:
    """Check a cron expression and return its canonical form; :class:`InvalidCron` if bad.

    Accepts 5 fields (minute hour day-of-month month day-of-week), 6 fields with a
    *leading* seconds field (Quartz/Spring order), the aliases in :data:`ALIASES`, names
    (``MON``, ``JAN``), ``L``/``LW`` in day-of-month, ``5L`` (last Friday) and ``MON#2``
    (second Monday) in day-of-week, and ``?`` for "any" in the day fields (Quartz).
    The canonical form is upper case, single-spaced, aliases expanded, ``?`` as ``*``, and
    a seconds field of exactly ``0`` dropped (so ``0 */5 * * * *`` equals ``*/5 * * * *``).

    Example::

        normalize_cron("@daily")              # '0 0 * * *'
        normalize_cron("0 0 12 ? * mon-fri")  # '0 12 * * MON-FRI'
        normalize_cron("61 * * * *")          # InvalidCron: bad minute field '61' ...
    """
    if not isinstance(expression, str):
        raise InvalidCron(str(expression), f"expected a string, got {type(expression).__name__}")
    text = " ".join(expression.split())
    if not text:
        raise InvalidCron(expression, "the expression is empty")
    if text.startswith("@"):
        alias = ALIASES.get(text.lower())
        if alias is None:
            known = ", ".join(ALIASES)
            raise InvalidCron(expression, f"unknown alias {text!r} (known: {known})")
        return alias
    fields = text.upper().split(" ")
    if len(fields) not in (5, 6):
        raise InvalidCron(
            expression,
            f"expected 5 fields ({' '.join(_FIELDS_5)}) or 6 with a leading second field, "
            f"got {len(fields)}",
        )
    names = _FIELDS_5 if len(fields) == 5 else _FIELDS_6
    fields = [
        _normalize_field(expression, name, value) for name, value in zip(names, fields, strict=True)
    ]
    if len(fields) == 6 and fields[0] == "0":
        fields = fields[1:]
    canonical = " ".join(fields)
    _check_with_parser(expression, canonical)
    return canonical


def _normalize_field(expression: str, name: str, value: str) -> str:
    if not _FIELD_CHARS.match(value) or ("?" in value and value != "?"):
        raise InvalidCron(expression, _bad_field(name, value))
    if value == "?":
        if name not in ("day-of-month", "day-of-week"):
            raise InvalidCron(expression, f"'?' is only allowed in the day fields, not {name}")
        return "*"
    return ",".join(_single_range(term) for term in value.split(","))


def _single_range(term: str) -> str:
    # cronsim reads a one-value range with a step ("0-0/1") like "0/1", i.e. from 0 to the
    # field's end; every other cron reads it as that one value.
    span, slash, step = term.partition("/")
    low, dash, high = span.partition("-")
    if slash and dash and low == high and step.isdigit() and int(step) > 0:
        return low
    return term


def _bad_field(name: str, value: str) -> str:
    return f"bad {name} field {value!r} (allowed: {_ALLOWED[name]})"


def _check_with_parser(expression: str, canonical: str) -> None:
    fields = canonical.split(" ")
    names = _FIELDS_5 if len(fields) == 5 else _FIELDS_6
    try:
        sim = CronSim(canonical, _PROBE)
    except CronSimError as exc:
        raise InvalidCron(expression, _parser_reason(str(exc), fields, names)) from exc
    except (ValueError, IndexError, AssertionError) as exc:
        # cronsim lets a few malformed terms (like "5-" or "#") escape as plain errors.
        raise InvalidCron(expression, f"cannot parse: {exc}") from exc
    try:
        next(sim)
    except StopIteration:
        raise InvalidCron(expression, "it never matches any date") from None


def _parser_reason(message: str, fields: list[str], names: tuple[str, ...]) -> str:
    # cronsim says "Bad hour": name the offending text and what the field allows.
    for name, value in zip(names, fields, strict=True):
        if message.lower() == f"bad {name}":
            return _bad_field(name, value)
    return message


@lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    """The time zone for an IANA name (``ValueError`` naming it when unknown).

    ``UTC`` is :data:`datetime.UTC` itself, which the parser handles fastest.

    Example::

        zone("Europe/Paris")  # ZoneInfo(key='Europe/Paris')
    """
    if name in ("UTC", "Etc/UTC", "utc"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like 'UTC')") from exc


def is_wall_clock(expression: str) -> bool:
    """Whether a normalised expression follows the wall clock across DST changes.

    True when both the minute and hour fields name fixed values (see the module docstring).

    Example::

        is_wall_clock("30 2 * * *")    # True: once on fall-back day, once in the gap
        is_wall_clock("*/5 * * * *")   # False: follows elapsed time
    """
    fields = expression.split()
    minute, hour = (fields[0], fields[1]) if len(fields) == 5 else (fields[1], fields[2])
    return not minute.startswith("*") and not hour.startswith("*")


def _local_naive(at: datetime, tz: tzinfo) -> datetime:
    return at.astimezone(tz).replace(tzinfo=None)


def _instant(local: datetime, tz: tzinfo) -> datetime:
    """The instant of a naive wall time: first occurrence when repeated, end of the gap
    when skipped."""
    aware = local.replace(tzinfo=tz, fold=0)
    as_utc = aware.astimezone(UTC)
    if _local_naive(as_utc, tz) == local:
        return as_utc
    return _gap_end(local, tz)


def _gap_end(local: datetime, tz: tzinfo) -> datetime:
    # ``local`` was skipped by a forward jump; the jump's instant lies in (lo, hi].
    lo = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    after = hi.astimezone(tz).utcoffset()
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            break
        if mid.astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi


def _iterate(expression: str, tz: tzinfo, start: datetime, *, reverse: bool) -> Iterator[datetime]:
    """Ticks strictly after ``start`` (or at or before it with ``reverse``), in order, UTC,
    without repeats."""
    last: datetime | None = None
    if is_wall_clock(expression):
        local = _local_naive(start, tz)
        if reverse:
            # In a repeated hour, wall times later than now's may still be earlier instants
            # (their first occurrence); start from the end of the repeat and filter.
            shift = _fold_length(start, tz)
            local = local + shift + timedelta(microseconds=1)
        else:
            local = local.replace(microsecond=0)
        naive_ticks: Iterator[datetime] = CronSim(expression, local, reverse=reverse)
        candidates: Iterator[datetime] = (_instant(t, tz) for t in naive_ticks)
    else:
        origin = start.astimezone(tz)
        if reverse:
            origin = origin + timedelta(microseconds=1)
        aware_ticks: Iterator[datetime] = CronSim(expression, origin, reverse=reverse)
        candidates = (t.astimezone(UTC) for t in aware_ticks)
    for tick in candidates:
        if (tick > start) if reverse else (tick <= start):
            continue
        if tick != last:
            last = tick
            yield tick


def _fold_length(at: datetime, tz: tzinfo) -> timedelta:
    local = at.astimezone(tz)
    if not local.fold:
        return timedelta(0)
    naive = local.replace(tzinfo=None)
    first = naive.replace(tzinfo=tz, fold=0).utcoffset() or timedelta(0)
    second = naive.replace(tzinfo=tz, fold=1).utcoffset() or timedelta(0)
    return max(first - second, timedelta(0))


def _zone(tz: str | tzinfo) -> tzinfo:
    return zone(tz) if isinstance(tz, str) else tz


def _aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got {at!r}")
    return at.astimezone(UTC)


def next_tick(expression: str, tz: str | tzinfo, after: datetime) -> datetime | None:
    """The first tick strictly after ``after``, as an aware UTC datetime.

    ``expression`` is normalised (see :func:`normalize_cron`); ``tz`` an IANA name or a
    ``tzinfo``. ``None`` when the expression has no tick in the next 50 years.

    Example::

        next_tick("0 9 * * *", "Europe/Paris", datetime(2026, 1, 5, 9, tzinfo=UTC))
        # datetime(2026, 1, 6, 8, 0, tzinfo=UTC)  (09:00 in Paris, winter time)
    """
    return next(_iterate(expression, _zone(tz), _aware(after, "after"), reverse=False), None)


def ticks_between(
    expression: str, tz: str | tzinfo, start: datetime, end: datetime, cap: int | None = None
) -> list[datetime]:
    """The ticks ``t`` with ``start < t <= end``, oldest first, at most ``cap`` of them.

    Example::

        ticks_between("*/15 * * * *", "UTC", t0, t0 + timedelta(hours=1))  # 4 ticks
    """
    start, end = _aware(start, "start"), _aware(end, "end")
    ticks: list[datetime] = []
    if cap is not None and cap <= 0:
        return ticks
    for tick in _iterate(expression, _zone(tz), start, reverse=False):
        if tick > end:
            break
        ticks.append(tick)
        if cap is not None and len(ticks) >= cap:
            break
    return ticks


def previous_ticks(
    expression: str, tz: str | tzinfo, at_or_before: datetime, after: datetime, cap: int
) -> list[datetime]:
    """The newest ticks ``t`` with ``after < t <= at_or_before``, newest first, at most ``cap``.

    Example::

        previous_ticks("0 * * * *", "UTC", now, now - timedelta(days=1), 1)  # latest hour
    """
    end, start = _aware(at_or_before, "at_or_before"), _aware(after, "after")
    ticks: list[datetime] = []
    if cap <= 0 or end <= start:
        return ticks
    for tick in _iterate(expression, _zone(tz), end, reverse=True):
        if tick <= start:
            break
        ticks.append(tick)
        if len(ticks) >= cap:
            break
    return ticks


@dataclass(frozen=True, slots=True)
class MissedSpan:
    """Missed ticks that one summary record stands for (too many to record one by one).

    ``first`` is the oldest missed tick (the summary record's tick), ``last`` the newest
    tick the summary covers, ``count`` how many ticks it covers (``None`` when more than
    ten thousand, not counted).
    """

    first: datetime
    last: datetime
    count: int | None


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What one scheduling pass does for one cron (see :func:`plan_ticks`).

    ``run``: ticks inserted ``pending``, oldest first. ``missed``: ticks recorded
    ``missed`` one record each, oldest first. ``summary``: one more ``missed`` record at
    ``summary.first`` standing for many ticks. ``watermark``: the newest due tick, to store
    (``None`` when nothing was due). ``next_tick``: the first tick after ``now``.
    """

    run: tuple[datetime, ...] = ()
    missed: tuple[datetime, ...] = ()
    summary: MissedSpan | None = None
    watermark: datetime | None = None
    next_tick: datetime | None = None

    @property
    def due(self) -> bool:
        """Whether the pass has anything to write."""
        return self.watermark is not None


def plan_ticks(
    expression: str,
    tz: str | tzinfo,
    watermark: datetime,
    now: datetime,
    checkin_margin: float | None,
    cap: int = DEFAULT_MISSED_CAP,
) -> TickPlan:
    """Decide which due ticks run and which are recorded ``missed``; never N catch-ups.

    The due ticks are those after ``watermark`` and at or before ``now``.

    * ``checkin_margin=None``: the newest due tick runs; older ones are missed (after an
      outage of any length: exactly one run).
    * ``checkin_margin=m``: each due tick at most ``m`` seconds old runs (the newest
      ``cap`` of them at most); older ones are missed.
    * Missed ticks: up to ``cap`` get one ``missed`` record each. When there are more, the
      newest ``cap - 1`` get their own record and one summary record, at the oldest missed
      tick, stands for the rest (:class:`MissedSpan`). So a pass writes at most ``2 * cap``
      records per cron, whatever the outage.

    Example::

        plan = plan_ticks("*/5 * * * *", "UTC", watermark, now, checkin_margin=None)
        plan.run, plan.missed, plan.next_tick
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap!r}")
    tzi = _zone(tz)
    watermark, now = _aware(watermark, "watermark"), _aware(now, "now")
    forward = _iterate(expression, tzi, watermark, reverse=False)
    first = next(forward, None)
    if first is None or first > now:
        return TickPlan(next_tick=first)
    second = next(forward, None)
    if second is None or second > now:
        # The usual pass of a live worker: one tick due. No reverse search needed.
        on_time = checkin_margin is None or (now - first).total_seconds() <= checkin_margin
        return TickPlan(
            (first,) if on_time else (), () if on_time else (first,), None, first, second
        )
    upcoming = next(_iterate(expression, tzi, now, reverse=False), None)
    newest = previous_ticks(expression, tzi, now, watermark, 2 * cap + 1)
    if not newest:
        return TickPlan(next_tick=upcoming)
    newest.reverse()  # oldest first from here on
    complete = len(newest) <= 2 * cap
    if checkin_margin is None:
        run = newest[-1:]
    else:
        limit = now - timedelta(seconds=checkin_margin)
        run = [t for t in newest if t >= limit][-cap:]
    missed = newest[: len(newest) - len(run)]
    if complete and len(missed) <= cap:
        return TickPlan(tuple(run), tuple(missed), None, newest[-1], upcoming)
    own = missed[len(missed) - (cap - 1) :] if cap > 1 else []
    folded_last = missed[len(missed) - len(own) - 1]
    summary = _summary(expression, tzi, watermark, folded_last, missed, own, complete)
    return TickPlan(tuple(run), tuple(own), summary, newest[-1], upcoming)


def _summary(
    expression: str,
    tz: tzinfo,
    watermark: datetime,
    folded_last: datetime,
    missed: list[datetime],
    own: list[datetime],
    complete: bool,
) -> MissedSpan:
    if complete:
        return MissedSpan(missed[0], folded_last, len(missed) - len(own))
    # Only the newest ticks were collected; find the oldest and count up to a budget.
    counted = ticks_between(expression, tz, watermark, folded_last, _COUNT_BUDGET + 1)
    count = len(counted) if len(counted) <= _COUNT_BUDGET else None
    return MissedSpan(counted[0], folded_last, count)


def describe_cron(expression: str) -> str:
    """The expression in words, for the dashboard (the expression itself if that fails).

    Example::

        describe_cron("0 9 * * 1-5")  # 'At 09:00 on Monday through Friday'
    """
    try:
        return str(CronSim(expression, _PROBE).explain())
    except Exception:  # a description is cosmetic: never fail a listing for it
        return expression
