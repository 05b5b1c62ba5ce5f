"""Real processes: three workers fire a per-second cron; one is SIGKILLed midway.

Every tick between the first and the last must have exactly one record (run, missed or
skipped), and the handler must have run once per ``finished`` record (counted in a file it
appends to), whatever the kill did.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from batchwork.jobs._model import JobStatus, JobType
from batchwork.jobs._store import store_from_url

WORKER = textwrap.dedent(
    """
    import asyncio, faulthandler, os, signal, sys, time
    from batchwork.jobs import JobProcessor

    faulthandler.register(signal.SIGUSR1)  # the test asks for every stack if a stop hangs

    url, runs = sys.argv[1], sys.argv[2]
    processor = JobProcessor(url, heartbeat_interval=0.2, lease_timeout=1.0, shutdown_grace=1.0)

    @processor.cron("* * * * * *")
    def every_second(signal):
        # O_APPEND writes of one short line are atomic across processes.
        with open(runs, "a") as out:
            out.write(f"{os.getpid()}\\n")
        time.sleep(0.3)  # long enough for the kill to catch a run now and then

    asyncio.run(processor.run_worker(concurrency=2))
    """
)


def spawn(url: str, runs: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(runs)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> bytes:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(1)
        process.kill()
        _, err = process.communicate()
    return err


@pytest.mark.slow
async def test_per_second_cron_with_a_killed_worker(store_url: str, tmp_path: Path) -> None:
    url = store_url
    runs = tmp_path / "runs.txt"
    runs.touch()
    workers = [spawn(url, runs) for _ in range(3)]
    try:
        deadline = time.monotonic() + 30
        while len(runs.read_text().splitlines()) < 3:
            assert time.monotonic() < deadline, "the cron never ran"
            assert all(w.poll() is None for w in workers), "a worker died on its own"
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].communicate(timeout=10)
        await asyncio.sleep(6)
    finally:
        errors = [stop(w) for w in workers[1:]]
        if workers[0].returncode is None:
            workers[0].kill()
            workers[0].communicate()
    assert [w.returncode for w in workers[1:]] == [0, 0], errors

    store = store_from_url(url)
    await store.open()
    try:
        jobs = await store.list_jobs(name="every_second", limit=10_000)
    finally:
        await store.close()
    ticks = sorted(job.scheduled_for for job in jobs if job.type is JobType.CRON_TASK)
    assert len(ticks) >= 8
    # One record per tick, and no tick left out between the first and the last.
    assert len(set(ticks)) == len(ticks)
    seconds = int((ticks[-1] - ticks[0]).total_seconds())
    assert ticks == [ticks[0] + timedelta(seconds=s) for s in range(seconds + 1)]
    # The handler ran once per finished record; a run cut by the kill may have written
    # its line without finishing.
    by_status = [job.status for job in jobs]
    finished = by_status.count(JobStatus.FINISHED)
    cut = by_status.count(JobStatus.RUNNING) + by_status.count(JobStatus.CRASHED)
    lines = len(runs.read_text().splitlines())
    assert finished <= lines <= finished + cut
    assert finished >= 5
    allowed = {
        JobStatus.FINISHED,
        JobStatus.MISSED,
        JobStatus.SKIPPED,
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.CRASHED,
    }
    assert set(by_status) <= allowed
