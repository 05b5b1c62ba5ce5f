"""Property: whatever sequence of store operations runs, every stored status change is in
``ALLOWED_TRANSITIONS`` and every record stays consistent with its status (every backend)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchwork.errors import JobNotFound
from batchwork.jobs._model import (
    ALLOWED_TRANSITIONS,
    ENDED_STATUSES,
    Claimed,
    Job,
    JobStatus,
)
from batchwork.jobs._store import Store

from .clock import ManualClock
from .store_helpers import new_job, outcome, worker

WORKERS = ("w1", "w2")
RUN_ENDS = sorted(ALLOWED_TRANSITIONS[JobStatus.RUNNING])

operation = st.one_of(
    st.tuples(
        st.just("enqueue"),
        st.integers(1, 4),  # how many
        st.booleans(),  # resumable
        st.booleans(),  # exclusive
        st.sampled_from([None, "k1", "k2"]),  # unique_key
        st.integers(0, 20),  # delay in seconds
    ),
    st.tuples(st.just("claim"), st.sampled_from(WORKERS), st.integers(1, 5)),
    st.tuples(st.just("claim_job"), st.integers(0, 30)),
    st.tuples(st.just("complete"), st.integers(0, 30), st.sampled_from(RUN_ENDS)),
    st.tuples(st.just("release"), st.integers(0, 30)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("retry"), st.integers(0, 30)),
    st.tuples(st.just("advance"), st.integers(0, 45)),
    st.tuples(st.just("heartbeat"), st.sampled_from(WORKERS)),
    st.tuples(st.just("recover")),
)


async def snapshot(store: Store) -> dict[int, Job]:
    return {job.id: job for job in await store.list_jobs(limit=100_000)}


def check_record(job: Job) -> None:
    assert job.attempts >= 0
    if job.status is JobStatus.RUNNING:
        assert job.worker_id is not None
        assert job.started_at is not None
        assert job.ended_at is None
    elif job.status in (JobStatus.PENDING, JobStatus.PAUSED):
        assert job.worker_id is None
        assert job.ended_at is None
    else:
        assert job.status in ENDED_STATUSES
        assert job.ended_at is not None
    if job.attempts == 0:
        assert job.started_at is None


class Scenario:
    """Runs one operation against the store, remembering claims (which may go stale)."""

    def __init__(self, store: Store, clock: ManualClock) -> None:
        self.store = store
        self.clock = clock
        self.claims: list[tuple[str, Claimed]] = []
        self.ids: list[int] = []

    def pick_id(self, index: int) -> int:
        return self.ids[index % len(self.ids)] if self.ids else 424_242

    async def run(self, op: tuple[Any, ...]) -> None:
        store, now = self.store, self.clock.now()
        kind = op[0]
        if kind == "enqueue":
            _, count, resumable, exclusive, key, delay = op
            jobs = [
                new_job(
                    now + timedelta(seconds=delay),
                    "prop",
                    resumable=resumable,
                    exclusive=exclusive,
                    unique_key=key,
                    max_crashes=1,
                )
                for _ in range(count)
            ]
            self.ids += [i for i in await store.enqueue(jobs, now=now) if i is not None]
        elif kind == "claim":
            claimed = await store.claim(op[1], tags=None, limit=op[2], now=now)
            self.claims += [(op[1], c) for c in claimed]
        elif kind == "claim_job":
            one = await store.claim_job("w1", self.pick_id(op[1]), now=now)
            if one is not None:
                self.claims.append(("w1", one))
        elif kind in ("complete", "release") and self.claims:
            worker_id, claimed = self.claims[op[1] % len(self.claims)]
            if kind == "release":
                await store.release(worker_id, [(claimed.job.id, claimed.lease)])
                return
            status = op[2]
            extra: dict[str, Any] = {}
            if status is JobStatus.PENDING:
                extra["retry_at"] = now
            await store.complete(worker_id, [outcome(claimed, self.clock, status, **extra)])
        elif kind in ("cancel", "retry"):
            try:
                if kind == "cancel":
                    await store.cancel(self.pick_id(op[1]), now=now)
                else:
                    await store.retry(self.pick_id(op[1]), now=now)
            except JobNotFound:
                assert not self.ids
        elif kind == "advance":
            self.clock.advance(op[1])
        elif kind == "heartbeat":
            await store.heartbeat(op[1], now=now, running=[c.job.id for _, c in self.claims])
        elif kind == "recover":
            await store.recover(now=now)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=25))
async def test_no_sequence_of_operations_stores_an_illegal_transition(
    store: Store, clock: ManualClock, ops: list[tuple[Any, ...]]
) -> None:
    # The store lives across examples; each example starts with fresh worker rows.
    for worker_id in WORKERS:
        await store.register_worker(worker(clock, worker_id, lease_timeout=30))
    scenario = Scenario(store, clock)
    before = await snapshot(store)
    for op in ops:
        await scenario.run(op)
        after = await snapshot(store)
        for job_id, job in after.items():
            check_record(job)
            old = before.get(job_id)
            if old is not None and old.status is not job.status:
                assert job.status in ALLOWED_TRANSITIONS[old.status], (op, old, job)
        assert before.keys() <= after.keys()  # nothing but purge deletes a job
        before = after
