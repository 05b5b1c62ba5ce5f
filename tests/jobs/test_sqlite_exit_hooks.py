"""The SQLite store's exit hook states after a completion (``Outcome.has_exit_hook``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchwork.jobs._model import JobStatus
from batchwork.jobs._sqlite import SQLiteStore

from .clock import ManualClock
from .store_helpers import add, claim_all, new_job, outcome, worker


async def hook_states(store: SQLiteStore) -> dict[int, str]:
    writer, _ = store._threads()
    rows = await writer.call(
        lambda conn: conn.execute("SELECT id, exit_hook FROM batchwork_jobs").fetchall()
    )
    return dict(rows)


@pytest.mark.parametrize("status", [JobStatus.FINISHED, JobStatus.ERRORED, JobStatus.CANCELLED])
async def test_sqlite_an_end_without_hook_leaves_none_due(
    tmp_path: Path, clock: ManualClock, status: JobStatus
) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.open()
    try:
        await store.register_worker(worker(clock))
        without, with_hook = await add(
            store, clock, new_job(clock.now(), "mail"), new_job(clock.now(), "mail")
        )
        claimed = {c.job.id: c for c in await claim_all(store, clock)}
        written = await store.complete(
            "w1",
            [
                outcome(claimed[without], clock, status, has_exit_hook=False),
                outcome(claimed[with_hook], clock, status),
            ],
        )
        assert written == {without, with_hook}
        assert await hook_states(store) == {without: "none", with_hook: "due"}
        [due] = await store.claim_exit_hooks("w1", names=["mail"], limit=10)
        assert due.id == with_hook
        assert due.status is status
        assert await store.claim_exit_hooks("w1", names=["mail"], limit=10) == []
    finally:
        await store.close()
