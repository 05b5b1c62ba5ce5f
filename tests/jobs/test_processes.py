"""Real worker processes on one store: crashes, graceful stops, exactly-once draining."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from batchwork.jobs import JobProcessor, JobStatus

from .apps import worker_app
from .apps.support import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = 0.5
LEASE = 2.0
GRACE = 1.0
# Slack for process scheduling on a loaded machine, on top of what the design promises.
SLACK = 1.5


class Workers:
    """Starts worker processes of ``tests.jobs.apps.worker_app`` and kills leftovers."""

    def __init__(self, store_url: str, out: Path, logs: Path) -> None:
        self.env = {
            **os.environ,
            "BW_TEST_STORE": store_url,
            "BW_TEST_OUT": str(out),
            "BW_TEST_HEARTBEAT": str(HEARTBEAT),
            "BW_TEST_LEASE": str(LEASE),
            "BW_TEST_GRACE": str(GRACE),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
        }
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, concurrency: int = 8) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.jobs.apps.worker_app", str(concurrency)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out.txt"


@pytest.fixture
def workers(store_url: str, out: Path, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(store_url, out, tmp_path)
    yield started
    started.close()


@pytest.fixture
async def processor(store_url: str) -> AsyncIterator[JobProcessor]:
    # The producer registers the same jobs as the workers, so that the options recorded at
    # enqueue (resumable, max_crashes) are the handlers' own.
    proc = JobProcessor(
        store_url, jobs=worker_app.processor.jobs, heartbeat_interval=HEARTBEAT, lease_timeout=LEASE
    )
    yield proc
    await proc.close()


def lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


async def count_workers(processor: JobProcessor, expected: int) -> None:
    async def ready() -> bool:
        return len(await processor.workers()) == expected

    await wait_until(ready, within=20)


async def status_is(processor: JobProcessor, job_id: int, *statuses: str) -> None:
    async def reached() -> bool:
        return (await processor.get(job_id)).status in statuses

    await wait_until(reached, within=20)


async def exit_code(proc: subprocess.Popen[bytes], within: float = 20) -> int:
    return await asyncio.to_thread(proc.wait, within)


async def test_sigkill_is_recovered_by_another_worker_within_the_lease(
    processor: JobProcessor, workers: Workers, out: Path
) -> None:
    first = workers.start()
    await count_workers(processor, 1)
    resumable = await processor.enqueue("resumable_wait")
    stubborn = await processor.enqueue("stubborn")
    await status_is(processor, resumable, "running")
    await status_is(processor, stubborn, "running")
    started_at = (await processor.get(resumable)).started_at
    workers.start()
    await count_workers(processor, 2)

    first.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    await status_is(processor, stubborn, "crashed")
    elapsed = time.monotonic() - killed_at
    assert elapsed < LEASE + HEARTBEAT + SLACK

    crashed = await processor.get(stubborn)
    assert crashed.error is not None
    assert crashed.ended_at is not None
    await wait_until(lambda: _true(f"start {resumable} 2" in lines(out)), within=20)
    rerun = await processor.get(resumable)
    assert rerun.status == JobStatus.RUNNING
    assert rerun.attempts == 2
    assert rerun.started_at == started_at  # the first start is kept across the resume
    await wait_until(lambda: _true(f"exit {stubborn} crashed" in lines(out)), within=20)

    for proc in workers.procs[1:]:
        proc.send_signal(signal.SIGTERM)
        assert await exit_code(proc) == 0
    assert lines(out).count(f"exit {stubborn} crashed") == 1  # on_exit exactly once
    assert (await processor.get(resumable)).status == JobStatus.PAUSED


async def test_sigterm_pauses_resumable_and_interrupts_the_rest(
    processor: JobProcessor, workers: Workers, out: Path
) -> None:
    worker = workers.start()
    await count_workers(processor, 1)
    ids = {name: await processor.enqueue(name) for name in ("resumable_wait", "stubborn", "polite")}
    for job_id in ids.values():
        await status_is(processor, job_id, "running")

    worker.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert await exit_code(worker) == 0
    assert time.monotonic() - stopped_at < GRACE + 5

    paused = await processor.get(ids["resumable_wait"])
    assert (paused.status, paused.result, paused.worker_id) == ("paused", None, None)
    interrupted = await processor.get(ids["stubborn"])
    assert interrupted.status == JobStatus.ERRORED
    assert interrupted.error is not None
    assert interrupted.error.startswith("interrupted")
    polite = await processor.get(ids["polite"])
    assert (polite.status, polite.result) == ("finished", "stopped: shutdown")
    assert lines(out).count(f"exit {ids['stubborn']} errored") == 1
    assert await processor.workers() == []


async def test_two_workers_run_each_of_2000_jobs_exactly_once(
    processor: JobProcessor, workers: Workers, out: Path
) -> None:
    workers.start(concurrency=32)
    workers.start(concurrency=32)
    await count_workers(processor, 2)
    ids = await processor.enqueue_many("record", list(range(2000)))

    async def all_finished() -> bool:
        return (await processor.stats()).by_status.get("finished", 0) == 2000

    await wait_until(all_finished, within=60)
    for proc in workers.procs:
        proc.send_signal(signal.SIGTERM)
    for proc in workers.procs:
        assert await exit_code(proc) == 0
    seen = [int(line) for line in lines(out)]
    assert len(seen) == 2000  # no duplicates ...
    assert sorted(seen) == sorted(ids)  # ... and none missing
    jobs = await processor.list(name="record", limit=5000)
    assert {job.attempts for job in jobs} == {1}


async def test_cancel_reaches_a_job_in_another_process_within_a_heartbeat(
    processor: JobProcessor, workers: Workers, out: Path
) -> None:
    workers.start()
    await count_workers(processor, 1)
    job_id = await processor.enqueue("polite")
    await status_is(processor, job_id, "running")
    asked_at = time.monotonic()
    assert await processor.cancel(job_id) is True
    await status_is(processor, job_id, "cancelled")
    assert time.monotonic() - asked_at < HEARTBEAT + SLACK
    job = await processor.get(job_id)
    assert job.result is None  # the handler returned, but the job was cancelled


async def test_max_crashes_stops_a_crash_loop(
    processor: JobProcessor, workers: Workers, out: Path
) -> None:
    first = workers.start()
    await count_workers(processor, 1)
    job_id = await processor.enqueue("resumable_wait")  # max_crashes=1
    await wait_until(lambda: _true(f"start {job_id} 1" in lines(out)), within=20)
    second = workers.start()
    await count_workers(processor, 2)
    first.send_signal(signal.SIGKILL)
    await wait_until(lambda: _true(f"start {job_id} 2" in lines(out)), within=20)
    workers.start()
    second.send_signal(signal.SIGKILL)
    await status_is(processor, job_id, "crashed")
    job = await processor.get(job_id)
    assert job.attempts == 2
    assert job.error is not None
    assert [line for line in lines(out) if line.startswith(f"start {job_id} ")] == [
        f"start {job_id} 1",
        f"start {job_id} 2",
    ]


async def _true(value: bool) -> bool:
    return value
