"""The cron scheduler: turns due ticks into ``cron_task`` records, exactly once per tick.

Leaderless: every worker that has crons runs a :class:`CronScheduler`. Each pass reads the
stored crons (schedule and watermark), decides with the pure :func:`plan_ticks` which due
ticks run and which are ``missed``, and hands the records to
:meth:`Store.fire_cron_ticks`, which inserts them under a unique ``(name, tick)`` key and
raises the watermark in the same transaction. When two workers fire the same tick, the
second insert is a no-op: no leader to elect, no in-memory schedule to lose, and no window
between "advance the schedule" and "insert the task" where a crash loses a tick.

Ticks are inserted *at* their tick time (never one period ahead), so an ``exclusive``
cron's tick is refused (recorded ``skipped`` by the store) only when the previous run is
really still active.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._cron import (
    DEFAULT_MISSED_CAP,
    MissedSpan,
    TickPlan,
    describe_cron,
    next_tick,
    plan_ticks,
    zone,
)
from ._defs import CronDef
from ._model import CronSpec, CronState, Job, JobStatus, JobType, NewJob, dump_json
from ._store import Store

__all__ = ["DEFAULT_LATE_AFTER", "CronInfo", "CronScheduler", "cron_handled"]

# With ``checkin_margin=None`` a tick counts as late for monitoring after this many seconds.
DEFAULT_LATE_AFTER = 60.0
# How many of a cron's newest records ``infos`` reads, and how far back "recent" goes.
_RECENT_RECORDS = 50
_RECENT_WINDOW = timedelta(hours=24)
_RAN = frozenset(
    {
        JobStatus.RUNNING,
        JobStatus.PAUSED,
        JobStatus.FINISHED,
        JobStatus.ERRORED,
        JobStatus.CANCELLED,
        JobStatus.TIMED_OUT,
        JobStatus.CRASHED,
    }
)
_NULL_PAYLOAD = dump_json(None)


@dataclass(frozen=True, slots=True)
class CronInfo:
    """One cron as monitoring sees it (``processor.crons()``, the dashboard, the CLI).

    ``next_tick`` is the first tick not yet fired (in the past when no worker fires it).
    ``last_*`` describe the newest tick record. ``late``: a due tick not started within
    ``checkin_margin`` (60 s when the margin is ``None``). ``missed``: ``missed`` records
    among the recent ones (last 24 h; a summary record counts once). ``overran``: the last
    run ended ``timed_out``, took longer than ``max_runtime``, or is still running past it.

    Example::

        for cron in await processor.crons():
            print(cron.name, cron.description, cron.next_tick, cron.last_status, cron.late)
    """

    name: str
    expression: str
    description: str
    timezone: str
    tag: str | None
    checkin_margin: float | None
    max_runtime: float | None
    next_tick: datetime | None
    last_tick: datetime | None
    last_status: JobStatus | None
    last_duration: float | None
    late: bool
    missed: int
    overran: bool


def cron_handled(cron: CronDef, tags: Sequence[str] | None) -> bool:
    """Whether a worker with ``tags`` fires this cron (the same rule as claiming jobs).

    Example::

        cron_handled(CronDef("* * * * *", fn, tag="gpu"), ["gpu"])  # True
        cron_handled(CronDef("* * * * *", fn, tag="gpu"), ["cpu"])  # False
    """
    return tags is None or cron.tag is None or cron.tag in tags


class CronScheduler:
    """Fires the crons a worker handles; one per worker, called from its loop.

    ``crons`` maps each cron's name to its definition: all the processor's crons, since
    :meth:`reconcile` makes the store match this set (a cron absent here is deleted).
    ``tags`` are the worker's tags: it fires untagged crons and those with one of its tags
    (``None``: every cron). ``default_timezone`` applies to crons with ``timezone=None``.
    ``missed_cap`` bounds the records one pass writes per cron (see :func:`plan_ticks`).

    Pass *every* registered cron and the worker's ``tags``; do not filter the mapping by
    tags yourself: :meth:`reconcile` deletes stored crons missing from it, so a tagged
    worker given only its own crons would delete the others'.

    Example::

        scheduler = CronScheduler(store, {"refresh": refresh_def}, default_timezone="UTC")
        await scheduler.reconcile(now)            # once, at worker start
        wake_at = await scheduler.run_due(now)    # every pass; sleep until wake_at
    """

    def __init__(
        self,
        store: Store,
        crons: Mapping[str, CronDef],
        *,
        default_timezone: str = "UTC",
        tags: Sequence[str] | None = None,
        missed_cap: int = DEFAULT_MISSED_CAP,
        logger: logging.Logger | None = None,
    ) -> None:
        if missed_cap < 1:
            raise ValueError(f"missed_cap must be >= 1, got {missed_cap!r}")
        self._store = store
        self._crons = dict(crons)
        self._cap = missed_cap
        self._log = logger or logging.getLogger("batchwork.jobs.cron")
        self._specs = {name: _spec(name, cron, default_timezone) for name, cron in crons.items()}
        self._handled = [name for name, cron in self._crons.items() if cron_handled(cron, tags)]
        # name -> (watermark, first tick after it): a pass skips crons not yet due without
        # any cron math, which keeps a thousand crons cheap.
        self._upcoming: dict[str, tuple[datetime, datetime | None]] = {}
        self._warned: set[str] = set()
        self._passed = False
        self._wake_at: datetime | None = None

    @property
    def specs(self) -> list[CronSpec]:
        """The schedules :meth:`reconcile` stores, one per registered cron."""
        return list(self._specs.values())

    @property
    def handled(self) -> list[str]:
        """Names of the crons this worker fires (after tag routing)."""
        return list(self._handled)

    async def reconcile(self, now: datetime) -> None:
        """Make the stored crons match this scheduler's (at worker start).

        A new cron is stored with watermark ``now`` (it first fires at its next tick after
        ``now``); a changed expression or time zone reschedules from ``now`` and drops its
        pending ticks; a cron no longer registered is deleted with its pending ticks
        (running ones finish). Safe when many workers start at once.
        """
        await self._store.reconcile_crons(self.specs, now=now)
        self._upcoming.clear()

    async def run_due(self, now: datetime) -> datetime | None:
        """Fire every due tick of the handled crons; return when the next tick is due.

        Returns ``None`` when this worker handles no cron with a future tick. A cron whose
        stored schedule differs from this worker's (another deployment reconciled it) is
        left to the workers that agree with the store, and logged once.
        """
        states = {state.name: state for state in await self._store.cron_states()}
        upcoming: list[datetime | None] = []
        firing: list[tuple[str, TickPlan]] = []
        for name in self._handled:
            state = states.get(name)
            if state is None or not self._agrees(name, state):
                continue
            plan = self._plan(name, state, now)
            if plan is None:
                upcoming.append(self._upcoming[name][1])
                continue
            upcoming.append(plan.next_tick)
            firing.append((name, plan))
        # One transaction per cron (the store's unit of exactly-once), issued together so a
        # store that groups commits writes a busy second's ticks at once.
        results = await asyncio.gather(
            *(self._fire(name, plan, now) for name, plan in firing), return_exceptions=True
        )
        failures = [error for error in results if isinstance(error, BaseException)]
        if failures:
            raise failures[0]
        ticks = [tick for tick in upcoming if tick is not None]
        wake_at = min(ticks) if ticks else None
        self._passed, self._wake_at = True, wake_at
        return wake_at

    def _agrees(self, name: str, state: CronState | None) -> bool:
        spec = self._specs[name]
        if state is not None and (state.expression, state.timezone) == (
            spec.expression,
            spec.timezone,
        ):
            self._warned.discard(name)
            return True
        if name not in self._warned:
            self._warned.add(name)
            stored = "missing" if state is None else f"{state.expression!r} in {state.timezone}"
            self._log.warning(
                "cron %r not fired by this worker: stored schedule is %s, this worker has "
                "%r in %s (the worker that reconciled last wins)",
                name,
                stored,
                spec.expression,
                spec.timezone,
            )
        return False

    def _plan(self, name: str, state: CronState, now: datetime) -> TickPlan | None:
        """The plan for a cron with due ticks, or ``None`` (its next tick is cached)."""
        cached = self._upcoming.get(name)
        fresh = cached is not None and cached[0] == state.watermark
        if fresh and cached is not None and (cached[1] is None or cached[1] > now):
            return None
        cron, spec = self._crons[name], self._specs[name]
        plan = plan_ticks(
            spec.expression, spec.timezone, state.watermark, now, _margin(cron), self._cap
        )
        if plan.watermark is None:
            self._upcoming[name] = (state.watermark, plan.next_tick)
            return None
        return plan

    async def _fire(self, name: str, plan: TickPlan, now: datetime) -> None:
        assert plan.watermark is not None
        records = tick_records(name, self._crons[name], plan, now)
        await self._store.fire_cron_ticks(name, records, watermark=plan.watermark, now=now)
        self._upcoming[name] = (plan.watermark, plan.next_tick)

    def seconds_until_next(self, now: datetime) -> float:
        """Seconds from ``now`` until the next tick of a handled cron (no I/O).

        ``0.0`` before the first :meth:`run_due` (a pass is due at once), ``inf`` when no
        handled cron has a future tick. Ticks fired by other workers may make it early,
        never late: a pass then finds nothing due and costs one read.

        Example::

            await asyncio.sleep(min(poll_interval, scheduler.seconds_until_next(now)))
        """
        if not self._passed:
            return 0.0
        if self._wake_at is None:
            return float("inf")
        return max(0.0, (self._wake_at - now).total_seconds())

    async def infos(self, now: datetime) -> list[CronInfo]:
        """Each registered cron with its schedule, last record and monitoring flags.

        Example::

            [info.name for info in await scheduler.infos(now) if info.late]
        """
        states = {state.name: state for state in await self._store.cron_states()}
        names = list(self._crons)
        recent = await asyncio.gather(
            *(self._store.list_jobs(name=name, limit=_RECENT_RECORDS) for name in names)
        )
        return [
            cron_info(
                name,
                self._crons[name],
                self._specs[name],
                states.get(name),
                [job for job in records if job.type is JobType.CRON_TASK],
                now,
            )
            for name, records in zip(names, recent, strict=True)
        ]


def _spec(name: str, cron: CronDef, default_timezone: str) -> CronSpec:
    tz = cron.timezone or default_timezone
    try:
        zone(tz)
    except ValueError as exc:
        raise ValueError(f"cron {name!r}: {exc}") from None
    return CronSpec(name=name, expression=cron.expression, timezone=tz)


def _seconds(value: float | timedelta | None) -> float | None:
    # CronDef already stores float seconds; a timedelta is accepted for hand-made defs.
    if isinstance(value, timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


def _margin(cron: CronDef) -> float | None:
    return _seconds(cron.checkin_margin)


def _max_runtime(cron: CronDef) -> float | None:
    return _seconds(cron.max_runtime)


def tick_records(name: str, cron: CronDef, plan: TickPlan, now: datetime) -> list[NewJob]:
    """The records one pass inserts for a cron, oldest tick first.

    Runs are ``pending`` (``exclusive`` as the cron says, so the store records ``skipped``
    when the previous run is still active); missed ticks are ``missed`` with an ``error``
    saying why (they are never active, so exclusivity does not apply to them).

    Example::

        tick_records("refresh", cron, plan_ticks(...), now)
    """
    margin = _margin(cron)
    newest = plan.run[-1] if plan.run else None
    records = [_missed(name, cron, t, _missed_reason(t, now, margin, newest)) for t in plan.missed]
    if plan.summary is not None:
        records.append(_missed(name, cron, plan.summary.first, _summary_reason(plan.summary)))
    records.extend(
        NewJob(
            name=name,
            payload_json=_NULL_PAYLOAD,
            scheduled_for=tick,
            type=JobType.CRON_TASK,
            status=JobStatus.PENDING,
            tag=cron.tag,
            exclusive=cron.exclusive,
            resumable=cron.resumable,
            max_crashes=cron.max_crashes,
        )
        for tick in plan.run
    )
    records.sort(key=lambda job: job.scheduled_for)
    return records


def _missed(name: str, cron: CronDef, tick: datetime, reason: str) -> NewJob:
    return NewJob(
        name=name,
        payload_json=_NULL_PAYLOAD,
        scheduled_for=tick,
        type=JobType.CRON_TASK,
        status=JobStatus.MISSED,
        tag=cron.tag,
        resumable=cron.resumable,
        max_crashes=cron.max_crashes,
        error=reason,
    )


def _missed_reason(
    tick: datetime, now: datetime, margin: float | None, newest: datetime | None
) -> str:
    late = (now - tick).total_seconds()
    if margin is None:
        return (
            f"missed: tick {tick.isoformat()} was found {late:.0f} s late together with the "
            f"newer tick {newest.isoformat() if newest else '?'}, which ran instead "
            "(checkin_margin=None runs only the newest due tick)"
        )
    if late <= margin:
        return (
            f"missed: tick {tick.isoformat()} was within its checkin_margin of {margin:g} s, "
            "but more ticks were due than one pass runs; newer ones ran"
        )
    return (
        f"missed: tick {tick.isoformat()} was found {late:.0f} s late, "
        f"past its checkin_margin of {margin:g} s"
    )


def _summary_reason(span: MissedSpan) -> str:
    count = "more than 10000" if span.count is None else str(span.count)
    return (
        f"missed: this record stands for {count} missed ticks from {span.first.isoformat()} "
        f"to {span.last.isoformat()}, too many to record one by one"
    )


def cron_info(
    name: str,
    cron: CronDef,
    spec: CronSpec,
    state: CronState | None,
    ticks: Sequence[Job],
    now: datetime,
) -> CronInfo:
    """Monitoring view of one cron from its stored state and newest tick records (pure).

    Example::

        cron_info("refresh", cron, spec, state, await store.list_jobs(name="refresh"), now)
    """
    margin = _margin(cron)
    late_after = timedelta(seconds=DEFAULT_LATE_AFTER if margin is None else margin)
    after = state.watermark if state is not None else now
    upcoming = next_tick(spec.expression, spec.timezone, after)
    last = max(ticks, key=lambda job: (job.scheduled_for, job.id), default=None)
    stale_pending = any(
        job.status is JobStatus.PENDING and job.scheduled_for < now - late_after for job in ticks
    )
    unfired = state is not None and upcoming is not None and upcoming < now - late_after
    recent = now - _RECENT_WINDOW
    missed = sum(
        1 for job in ticks if job.status is JobStatus.MISSED and job.scheduled_for >= recent
    )
    return CronInfo(
        name=name,
        expression=spec.expression,
        description=describe_cron(spec.expression),
        timezone=spec.timezone,
        tag=cron.tag,
        checkin_margin=margin,
        max_runtime=_max_runtime(cron),
        next_tick=upcoming,
        last_tick=last.scheduled_for if last else None,
        last_status=JobStatus(last.status) if last else None,
        last_duration=last.duration if last else None,
        late=stale_pending or unfired,
        missed=missed,
        overran=_overran(ticks, _max_runtime(cron), now),
    )


def _overran(ticks: Sequence[Job], max_runtime: float | None, now: datetime) -> bool:
    runs = [job for job in ticks if job.status in _RAN]
    last = max(runs, key=lambda job: (job.scheduled_for, job.id), default=None)
    if last is None:
        return False
    if last.status is JobStatus.TIMED_OUT:
        return True
    if max_runtime is None:
        return False
    if last.duration is not None and last.duration > max_runtime:
        return True
    started = last.started_at
    return (
        last.status is JobStatus.RUNNING
        and started is not None
        and (now - started).total_seconds() > max_runtime
    )
