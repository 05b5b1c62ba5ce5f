"""Real worker processes drain a PostgreSQL queue while the server restarts under them:
a clean restart (``fast``) and a crash (``immediate``), on a private cluster.

What the store promises (see ``PostgresStore``): enqueues and completions are durable,
claims and heartbeats commit asynchronously. The server is away far shorter than the lease,
so no worker loses its lease and every job ends ``finished`` with one attempt. A clean stop
flushes every commit: each job's handler runs exactly once. A crash may forget the last
claims (never an acknowledged enqueue or completion): such a job goes back to the queue and
its handler runs once more after the restart, so a job runs at most twice, and a second
run always starts after the crash.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from batchwork.errors import StoreError
from batchwork.jobs import JobProcessor, JobStatus

from ..backends import postgres_url
from . import test_processes
from .apps.support import wait_until
from .private_postgres import PrivateCluster, private_cluster
from .test_processes import Workers, count_workers, exit_code, lines

pytestmark = pytest.mark.slow

# The process tests' fixtures, here on the private cluster's ``store_url`` (below).
out, processor, workers = test_processes.out, test_processes.processor, test_processes.workers

JOBS = 3000
# Far longer than the server is away: a worker keeps its lease across the restart.
LEASE = 15.0
# Written into the handlers' file while the server is down (between stop and start).
DOWN = "server down"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as server:
        yield server


@pytest.fixture
def store_url(cluster: PrivateCluster) -> str:
    """A fresh schema on the private cluster, for the process tests' fixtures."""
    return postgres_url(cluster.dsn, f"bw_{uuid4().hex[:12]}")


async def finished(processor: JobProcessor) -> int:
    """Finished jobs, or -1 while the store is unreachable."""
    try:
        return (await processor.stats()).by_status.get("finished", 0)
    except StoreError:
        return -1


def restart(cluster: PrivateCluster, mode: str, out: Path) -> None:
    """Stop the server in ``mode``, mark the handlers' file while it is down, start it."""
    cluster.stop(mode)
    with out.open("a", encoding="utf-8") as marker:
        marker.write(DOWN + "\n")
    cluster.start_again()


def worker_logs(logs: Path) -> list[str]:
    return [log.read_text() for log in sorted(logs.glob("worker-*.log"))]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_restart_mid_drain_loses_no_job(
    mode: str,
    cluster: PrivateCluster,
    processor: JobProcessor,
    workers: Workers,
    out: Path,
    tmp_path: Path,
) -> None:
    workers.env["BW_TEST_LEASE"] = str(LEASE)
    ids = await processor.enqueue_many("record", list(range(JOBS)))
    for _ in range(2):
        workers.start(concurrency=16)
    await count_workers(processor, 2)

    async def under_way() -> bool:
        return await finished(processor) >= JOBS // 10

    await wait_until(under_way, within=30)
    went_at = time.monotonic()
    before = await finished(processor)
    await asyncio.to_thread(restart, cluster, mode, out)
    away = time.monotonic() - went_at
    assert before < JOBS, "the drain ended before the restart: nothing was tested"
    assert away < LEASE / 2, f"the server was away {away:.1f} s: too long for the lease"

    async def drained() -> bool:
        return await finished(processor) == JOBS

    await wait_until(drained, within=60)
    for proc in workers.procs:
        proc.send_signal(signal.SIGTERM)
    for proc in workers.procs:
        assert await exit_code(proc) == 0

    jobs = await processor.list(name="record", limit=2 * JOBS)
    assert sorted(job.id for job in jobs) == sorted(ids)  # none lost
    assert {(job.status, job.attempts) for job in jobs} == {(JobStatus.FINISHED, 1)}
    written = lines(out)
    crash = written.index(DOWN)
    runs = Counter(int(line) for line in written if line != DOWN)
    runs_before_crash = Counter(int(line) for line in written[:crash])
    assert set(runs) == set(ids)  # every job ran
    if mode == "fast":
        assert set(runs.values()) == {1}
    else:
        assert max(runs.values()) <= 2
        assert max(runs_before_crash.values()) == 1

    for log in worker_logs(tmp_path):
        assert "LISTEN connection lost" in log, log
        assert "LISTEN re-established" in log, log
        assert "lost its lease" not in log, log
