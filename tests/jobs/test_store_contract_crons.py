"""The store contract: stored crons, their watermarks and tick records."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from batchwork.jobs._model import CronSpec, JobStatus, JobType
from batchwork.jobs._store import Store, store_from_url

from .clock import ManualClock
from .store_helpers import claim_all, cron_tick, worker

EVERY_MINUTE = CronSpec("every_minute", "* * * * *", "UTC")
HOURLY = CronSpec("hourly", "0 * * * *", "UTC")


async def test_reconcile_stores_new_crons_with_watermark_now(
    store: Store, clock: ManualClock
) -> None:
    assert await store.cron_states() == []
    await store.reconcile_crons([HOURLY, EVERY_MINUTE], now=clock.now())
    states = await store.cron_states()
    assert [(s.name, s.expression, s.timezone) for s in states] == [
        ("every_minute", "* * * * *", "UTC"),
        ("hourly", "0 * * * *", "UTC"),
    ]
    assert all(s.watermark == s.created_at == s.updated_at == clock.now() for s in states)

    clock.advance(90)
    await store.reconcile_crons([HOURLY, EVERY_MINUTE], now=clock.now())
    assert await store.cron_states() == states  # unchanged crons keep their watermark


async def test_reconcile_changed_and_removed_crons(store: Store, clock: ManualClock) -> None:
    start = clock.now()
    await store.reconcile_crons([HOURLY, EVERY_MINUTE], now=start)
    tick = start + timedelta(minutes=1)
    await store.fire_cron_ticks(
        "every_minute", [cron_tick("every_minute", tick)], watermark=tick, now=start
    )
    [pending_hourly, running_hourly] = await store.fire_cron_ticks(
        "hourly",
        [cron_tick("hourly", start + timedelta(hours=h)) for h in (2, 0)],
        watermark=start,
        now=start,
    )
    await store.register_worker(worker(clock))
    [running] = await claim_all(store, clock)
    assert running.job.id == running_hourly

    clock.advance(30)
    changed = CronSpec("every_minute", "*/2 * * * *", "Europe/Paris")
    await store.reconcile_crons([changed], now=clock.now())
    [state] = await store.cron_states()
    assert (state.name, state.expression, state.timezone) == (
        "every_minute",
        "*/2 * * * *",
        "Europe/Paris",
    )
    assert (state.watermark, state.updated_at, state.created_at) == (
        clock.now(),
        clock.now(),
        start,
    )
    remaining = {job.id: job for job in await store.list_jobs()}
    assert list(remaining) == [running_hourly]  # pending ticks of both are gone
    assert pending_hourly not in remaining
    assert remaining[running_hourly].status is JobStatus.RUNNING


async def test_concurrent_reconciles_leave_one_row_per_cron(
    store_url: str, clock: ManualClock
) -> None:
    stores = [store_from_url(store_url) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        await asyncio.gather(
            *(
                store.reconcile_crons([HOURLY, EVERY_MINUTE], now=clock.now())
                for store in stores
                for _ in range(3)
            )
        )
        for store in stores:
            assert [s.name for s in await store.cron_states()] == ["every_minute", "hourly"]
    finally:
        for store in stores:
            await store.close()


async def test_fire_cron_ticks_dedupes_and_raises_the_watermark(
    store: Store, clock: ManualClock
) -> None:
    start = clock.now()
    await store.reconcile_crons([EVERY_MINUTE], now=start)
    ticks = [start + timedelta(minutes=m) for m in (1, 2, 3)]
    clock.advance(200)
    ids = await store.fire_cron_ticks(
        "every_minute",
        [
            cron_tick("every_minute", ticks[0], status=JobStatus.MISSED),
            cron_tick("every_minute", ticks[1], status=JobStatus.MISSED),
            cron_tick("every_minute", ticks[2]),
        ],
        watermark=ticks[2],
        now=clock.now(),
    )
    assert None not in ids
    assert len(set(ids)) == 3
    [state] = await store.cron_states()
    assert state.watermark == ticks[2]
    jobs = {job.scheduled_for: job for job in await store.list_jobs(name="every_minute")}
    assert [jobs[t].status for t in ticks] == [
        JobStatus.MISSED,
        JobStatus.MISSED,
        JobStatus.PENDING,
    ]
    assert {job.type for job in jobs.values()} == {JobType.CRON_TASK}

    again = await store.fire_cron_ticks(
        "every_minute",
        [cron_tick("every_minute", ticks[2])],
        watermark=ticks[0],  # an older watermark never lowers the stored one
        now=clock.now(),
    )
    assert again == [None]
    [state] = await store.cron_states()
    assert state.watermark == ticks[2]


async def test_an_exclusive_tick_is_skipped_while_one_runs(
    store: Store, clock: ManualClock
) -> None:
    start = clock.now()
    await store.reconcile_crons([EVERY_MINUTE], now=start)
    [first] = await store.fire_cron_ticks(
        "every_minute",
        [cron_tick("every_minute", start, exclusive=True)],
        watermark=start,
        now=start,
    )
    await store.register_worker(worker(clock))
    await claim_all(store, clock)
    nxt = start + timedelta(minutes=1)
    [second] = await store.fire_cron_ticks(
        "every_minute", [cron_tick("every_minute", nxt, exclusive=True)], watermark=nxt, now=nxt
    )
    assert second is not None
    skipped = await store.get(second)
    assert (skipped.status, skipped.conflict_id) == (JobStatus.SKIPPED, first)


async def test_concurrent_fires_store_each_tick_once(store_url: str, clock: ManualClock) -> None:
    stores = [store_from_url(store_url) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        await stores[0].reconcile_crons([EVERY_MINUTE], now=clock.now())
        ticks = [clock.now() + timedelta(minutes=m) for m in range(10)]
        results = await asyncio.gather(
            *(
                store.fire_cron_ticks(
                    "every_minute",
                    [cron_tick("every_minute", tick) for tick in ticks],
                    watermark=ticks[-1],
                    now=clock.now(),
                )
                for store in stores
                for _ in range(2)
            )
        )
        for position in range(len(ticks)):
            fired = [ids[position] for ids in results if ids[position] is not None]
            assert len(fired) == 1
        assert len(await stores[1].list_jobs(name="every_minute")) == len(ticks)
    finally:
        for store in stores:
            await store.close()
