"""CronScheduler against real stores: exactly once, catch-up, exclusive, reconcile, tags."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batchwork.jobs._cron_scheduler import CronScheduler, cron_handled
from batchwork.jobs._defs import CronDef
from batchwork.jobs._model import Job, JobStatus, JobType
from batchwork.jobs._store import Store

from .clock import ManualClock
from .store_helpers import outcome, worker


def handler(signal: Any) -> None:
    return None


def cron(expression: str, **options: Any) -> CronDef:
    return CronDef(expression, handler, **options)


@pytest.fixture
def at_hour(clock: ManualClock) -> ManualClock:
    """The clock moved to the next whole hour (close to a database's own clock)."""
    now = clock.now()
    clock.set(now.replace(minute=0, second=0) + timedelta(hours=1))
    return clock


def scheduler(store: Store, crons: dict[str, CronDef], **options: Any) -> CronScheduler:
    return CronScheduler(store, crons, default_timezone="UTC", **options)


async def ticks(store: Store, name: str) -> list[Job]:
    jobs = await store.list_jobs(name=name, limit=10_000)
    return sorted(
        (job for job in jobs if job.type is JobType.CRON_TASK), key=lambda job: job.scheduled_for
    )


def statuses(jobs: Sequence[Job]) -> list[str]:
    return [str(job.status) for job in jobs]


async def test_new_cron_first_fires_at_its_next_tick(store: Store, at_hour: ManualClock) -> None:
    start = at_hour.advance(60)  # 01 past the hour: the :00 tick is before the cron existed
    sched = scheduler(store, {"five": cron("*/5 * * * *")})
    await sched.reconcile(start)
    [state] = await store.cron_states()
    assert (state.name, state.expression, state.timezone, state.watermark) == (
        "five",
        "*/5 * * * *",
        "UTC",
        start,
    )
    assert await sched.run_due(start) == start + timedelta(minutes=4)
    assert await ticks(store, "five") == []
    tick = at_hour.advance(240)
    assert await sched.run_due(tick) == tick + timedelta(minutes=5)
    [record] = await ticks(store, "five")
    assert record.scheduled_for == tick
    assert record.status is JobStatus.PENDING
    assert record.type is JobType.CRON_TASK
    assert record.payload is None


async def test_records_carry_the_cron_options(store: Store, at_hour: ManualClock) -> None:
    options = {"tag": "gpu", "resumable": True, "max_crashes": 5, "exclusive": False}
    sched = scheduler(store, {"gpu": cron("* * * * *", **options)}, tags=["gpu"])
    await sched.reconcile(at_hour.now())
    await sched.run_due(at_hour.advance(60))
    [record] = await ticks(store, "gpu")
    assert (record.tag, record.resumable, record.max_crashes) == ("gpu", True, 5)


async def test_many_schedulers_fire_each_tick_once(store: Store, at_hour: ManualClock) -> None:
    crons = {"minutely": cron("* * * * *", exclusive=False), "fives": cron("*/5 * * * * *")}
    schedulers = [scheduler(store, crons) for _ in range(8)]
    await asyncio.gather(*(s.reconcile(at_hour.now()) for s in schedulers))
    assert len(await store.cron_states()) == 2
    start = at_hour.now()
    for _ in range(12):
        now = at_hour.advance(5)
        # Each scheduler sees a slightly different "now" within the same tick.
        await asyncio.gather(
            *(s.run_due(now + timedelta(milliseconds=7 * i)) for i, s in enumerate(schedulers))
        )
    minutely = await ticks(store, "minutely")
    assert [job.scheduled_for for job in minutely] == [start + timedelta(minutes=1)]
    fives = await ticks(store, "fives")
    expected = [start + timedelta(seconds=5 * i) for i in range(1, 13)]
    assert [job.scheduled_for for job in fives] == expected


async def test_outage_without_margin_runs_once_and_records_missed(
    store: Store, at_hour: ManualClock
) -> None:
    sched = scheduler(store, {"five": cron("*/5 * * * *")})
    start = at_hour.now()
    await sched.reconcile(start)
    now = at_hour.advance(3600 + 90)  # an hour and a half minute down
    await sched.run_due(now)
    records = await ticks(store, "five")
    assert statuses(records) == ["missed"] * 11 + ["pending"]
    assert records[-1].scheduled_for == start + timedelta(hours=1)
    assert records[0].error is not None
    assert "checkin_margin=None" in records[0].error
    [state] = await store.cron_states()
    assert state.watermark == start + timedelta(hours=1)
    # A second pass at the same moment writes nothing more.
    await sched.run_due(now)
    assert len(await ticks(store, "five")) == 12


async def test_outage_with_margin_runs_ticks_within_it(store: Store, at_hour: ManualClock) -> None:
    sched = scheduler(store, {"five": cron("*/5 * * * *", checkin_margin=420, exclusive=False)})
    await sched.reconcile(at_hour.now())
    await sched.run_due(at_hour.advance(1800 + 120))
    records = await ticks(store, "five")
    assert statuses(records) == ["missed"] * 4 + ["pending"] * 2
    assert records[0].error is not None
    assert "past its checkin_margin of 420 s" in records[0].error


async def test_missed_records_are_capped_with_a_summary(store: Store, at_hour: ManualClock) -> None:
    sched = scheduler(store, {"second": cron("* * * * * *")}, missed_cap=10)
    start = at_hour.now()
    await sched.reconcile(start)
    await sched.run_due(at_hour.advance(600))
    records = await ticks(store, "second")
    assert statuses(records) == ["missed"] * 10 + ["pending"]
    summary = records[0]
    assert summary.scheduled_for == start + timedelta(seconds=1)
    assert summary.error is not None
    assert "stands for 590 missed ticks" in summary.error


async def test_runs_over_the_cap_are_missed_with_their_reason(
    store: Store, at_hour: ManualClock
) -> None:
    crons = {"second": cron("* * * * * *", checkin_margin=60, exclusive=False)}
    sched = scheduler(store, crons, missed_cap=5)
    await sched.reconcile(at_hour.now())
    await sched.run_due(at_hour.advance(8))
    records = await ticks(store, "second")
    assert statuses(records) == ["missed"] * 3 + ["pending"] * 5
    assert records[0].error is not None
    assert "more ticks were due than one pass runs" in records[0].error


async def test_exclusive_cron_skips_only_while_a_run_is_active(
    store: Store, at_hour: ManualClock
) -> None:
    sched = scheduler(store, {"minutely": cron("* * * * *")})
    await sched.reconcile(at_hour.now())
    await store.register_worker(worker(at_hour))
    await sched.run_due(at_hour.advance(60))
    [claimed] = await store.claim("w1", tags=None, limit=10, now=at_hour.now())
    # Tick 2 comes while tick 1 still runs: recorded skipped, naming the running one.
    await sched.run_due(at_hour.advance(60))
    await store.complete("w1", [outcome(claimed, at_hour)])
    # Tick 3 comes after tick 1 ended: it runs (no alternate-tick skipping).
    await sched.run_due(at_hour.advance(60))
    await sched.run_due(at_hour.advance(60))
    records = await ticks(store, "minutely")
    assert statuses(records) == ["finished", "skipped", "pending", "skipped"]
    assert records[1].conflict_id == claimed.job.id
    assert records[3].conflict_id == records[2].id
    assert [job.scheduled_for for job in records] == [
        at_hour.now() - timedelta(minutes=m) for m in (3, 2, 1, 0)
    ]


async def test_changed_expression_reschedules_from_now(store: Store, at_hour: ManualClock) -> None:
    old = scheduler(store, {"job": cron("* * * * *")})
    await old.reconcile(at_hour.now())
    await old.run_due(at_hour.advance(60))
    assert statuses(await ticks(store, "job")) == ["pending"]
    changed_at = at_hour.advance(30)
    new = scheduler(store, {"job": cron("*/5 * * * *")})
    await new.reconcile(changed_at)
    [state] = await store.cron_states()
    assert (state.expression, state.watermark) == ("*/5 * * * *", changed_at)
    assert await ticks(store, "job") == []  # the old pending tick was dropped
    # The old worker no longer fires a schedule the store does not have.
    await old.run_due(at_hour.advance(30))
    assert await ticks(store, "job") == []
    await new.run_due(at_hour.now() + timedelta(minutes=4))
    assert [job.scheduled_for for job in await ticks(store, "job")] == [
        changed_at - timedelta(seconds=90) + timedelta(minutes=5)
    ]


async def test_removed_cron_drops_pending_ticks_but_keeps_running_ones(
    store: Store, at_hour: ManualClock
) -> None:
    crons = {"keep": cron("* * * * *"), "gone": cron("* * * * *", exclusive=False)}
    sched = scheduler(store, crons)
    await sched.reconcile(at_hour.now())
    await store.register_worker(worker(at_hour))
    await sched.run_due(at_hour.advance(60))
    claimed = await store.claim("w1", tags=None, limit=1, now=at_hour.now())
    await sched.run_due(at_hour.advance(60))
    running = {c.job.name for c in claimed}
    await scheduler(store, {"keep": crons["keep"]}).reconcile(at_hour.now())
    assert [state.name for state in await store.cron_states()] == ["keep"]
    gone = await ticks(store, "gone")
    if "gone" in running:
        assert statuses(gone) == ["running"]
    else:
        assert gone == []


async def test_concurrent_reconcile_leaves_one_row_per_cron(
    store: Store, at_hour: ManualClock
) -> None:
    crons = {f"c{i}": cron(f"{i} * * * *") for i in range(5)}
    await asyncio.gather(*(scheduler(store, crons).reconcile(at_hour.now()) for _ in range(7)))
    assert sorted(state.name for state in await store.cron_states()) == sorted(crons)


async def test_tags_route_crons_like_jobs(store: Store, at_hour: ManualClock) -> None:
    crons = {
        "untagged": cron("* * * * *"),
        "cpu": cron("* * * * *", tag="cpu"),
        "gpu": cron("* * * * *", tag="gpu"),
    }
    gpu_worker = scheduler(store, crons, tags=["gpu"])
    assert gpu_worker.handled == ["untagged", "gpu"]
    assert scheduler(store, crons).handled == ["untagged", "cpu", "gpu"]
    await gpu_worker.reconcile(at_hour.now())
    assert len(await store.cron_states()) == 3  # reconcile stores every cron
    await gpu_worker.run_due(at_hour.advance(60))
    assert len(await ticks(store, "untagged")) == 1
    assert len(await ticks(store, "gpu")) == 1
    assert await ticks(store, "cpu") == []


def test_cron_handled_rule() -> None:
    tagged = cron("* * * * *", tag="a")
    assert cron_handled(tagged, None)
    assert cron_handled(tagged, ["a", "b"])
    assert not cron_handled(tagged, ["b"])
    assert cron_handled(cron("* * * * *"), ["b"])


async def test_time_zone_of_the_cron_or_the_default(store: Store, at_hour: ManualClock) -> None:
    crons = {"paris": cron("0 9 * * *", timezone="Europe/Paris"), "default": cron("0 9 * * *")}
    sched = CronScheduler(store, crons, default_timezone="America/New_York")
    assert {spec.name: spec.timezone for spec in sched.specs} == {
        "paris": "Europe/Paris",
        "default": "America/New_York",
    }
    with pytest.raises(ValueError, match=r"'bad'.*Nowhere/Special"):
        CronScheduler(store, {"bad": cron("* * * * *", timezone="Nowhere/Special")})


async def test_disagreeing_schedule_is_logged_once(
    store: Store, at_hour: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await scheduler(store, {"job": cron("*/5 * * * *")}).reconcile(at_hour.now())
    stale = scheduler(store, {"job": cron("* * * * *")})
    with caplog.at_level(logging.WARNING, logger="batchwork.jobs.cron"):
        await stale.run_due(at_hour.advance(60))
        await stale.run_due(at_hour.advance(60))
    assert await ticks(store, "job") == []
    assert len([r for r in caplog.records if "not fired by this worker" in r.message]) == 1


async def test_seconds_until_next(store: Store, at_hour: ManualClock) -> None:
    sched = scheduler(store, {"five": cron("*/5 * * * *")})
    await sched.reconcile(at_hour.now())
    assert sched.seconds_until_next(at_hour.now()) == 0.0  # no pass yet
    await sched.run_due(at_hour.advance(1))
    assert sched.seconds_until_next(at_hour.now()) == 299.0
    assert sched.seconds_until_next(at_hour.now() + timedelta(hours=1)) == 0.0
    empty = scheduler(store, {"gpu": cron("* * * * *", tag="gpu")}, tags=["cpu"])
    assert await empty.run_due(at_hour.now()) is None
    assert empty.seconds_until_next(at_hour.now()) == float("inf")


async def test_a_thousand_crons_pass_cheaply_when_nothing_is_due(
    store: Store, at_hour: ManualClock
) -> None:
    crons = {f"c{i}": cron(f"{i % 60} {i % 24} * * *") for i in range(1000)}
    sched = scheduler(store, crons)
    await sched.reconcile(at_hour.now())
    await sched.run_due(at_hour.advance(0.5))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):
        await sched.run_due(at_hour.now())
    # Cached next ticks: a pass is one read of the cron table, no cron math.
    assert (loop.time() - started) / 5 < 0.25


# -- monitoring ------------------------------------------------------------------------


async def test_infos_before_and_after_ticks(store: Store, at_hour: ManualClock) -> None:
    crons = {"five": cron("*/5 * * * *", checkin_margin=60, max_runtime=30, tag="ops")}
    sched = scheduler(store, crons)
    start = at_hour.now()
    await sched.reconcile(start)
    [info] = await sched.infos(start)
    assert (info.name, info.expression, info.timezone, info.tag) == (
        "five",
        "*/5 * * * *",
        "UTC",
        "ops",
    )
    assert info.description == "Every fifth minute of every hour"
    assert info.next_tick == start + timedelta(minutes=5)
    assert (info.last_tick, info.last_status, info.last_duration) == (None, None, None)
    assert (info.late, info.missed, info.overran) == (False, 0, False)
    assert (info.checkin_margin, info.max_runtime) == (60.0, 30.0)

    await store.register_worker(worker(at_hour))
    tick = at_hour.advance(300)
    await sched.run_due(tick)
    [claimed] = await store.claim("w1", tags=None, limit=1, now=tick)
    await store.complete("w1", [outcome(claimed, at_hour, duration=45.0)])
    [info] = await sched.infos(at_hour.now())
    assert (info.last_tick, info.last_status, info.last_duration) == (tick, "finished", 45.0)
    assert info.overran  # 45 s > max_runtime 30 s
    assert not info.late
    assert info.next_tick == tick + timedelta(minutes=5)


async def test_infos_flags_late_pending_and_unfired_ticks(
    store: Store, at_hour: ManualClock
) -> None:
    sched = scheduler(store, {"five": cron("*/5 * * * *", checkin_margin=60)})
    await sched.reconcile(at_hour.now())
    tick = at_hour.advance(300)
    await sched.run_due(tick)
    assert not (await sched.infos(tick + timedelta(seconds=60)))[0].late
    assert (await sched.infos(tick + timedelta(seconds=61)))[0].late  # pending, not started
    # No worker fires the next tick: late once it is a margin past due.
    [info] = await sched.infos(tick + timedelta(minutes=6, seconds=1))
    assert info.late
    assert info.next_tick == tick + timedelta(minutes=5)


async def test_infos_counts_recent_missed_and_running_overrun(
    store: Store, at_hour: ManualClock
) -> None:
    sched = scheduler(store, {"minutely": cron("* * * * *", max_runtime=10)})
    await sched.reconcile(at_hour.now())
    await sched.run_due(at_hour.advance(300))  # 4 missed, 1 pending
    [info] = await sched.infos(at_hour.now())
    assert info.missed == 4
    assert info.last_status == "pending"
    await store.register_worker(worker(at_hour))
    await store.claim("w1", tags=None, limit=1, now=at_hour.now())
    assert not (await sched.infos(at_hour.advance(10)))[0].overran
    [info] = await sched.infos(at_hour.advance(1))
    assert info.overran  # still running 11 s after its start, max_runtime 10 s
    assert info.last_status == "running"
    assert (await sched.infos(at_hour.now() + timedelta(days=1, seconds=1)))[0].missed == 0


def test_cron_info_is_frozen() -> None:
    from dataclasses import FrozenInstanceError

    from batchwork.jobs._cron_scheduler import CronInfo

    info = CronInfo(
        name="a",
        expression="* * * * *",
        description="",
        timezone="UTC",
        tag=None,
        checkin_margin=None,
        max_runtime=None,
        next_tick=datetime(2026, 1, 1, tzinfo=UTC),
        last_tick=None,
        last_status=None,
        last_duration=None,
        late=False,
        missed=0,
        overran=False,
    )
    with pytest.raises(FrozenInstanceError):
        info.late = True  # type: ignore[misc]
