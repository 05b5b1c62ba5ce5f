"""``batchwork worker --processes N``: real processes under the supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from batchwork.jobs import JobProcessor
from batchwork.jobs._supervisor import ChildEvent, Supervisor, restart_delay

from .conftest import APP, Cli, wait_until

pytestmark = pytest.mark.slow


def children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def pair(pids: Iterable[int]) -> list[int] | None:
    """The pids, sorted, when there are exactly two (the supervisor's full count)."""
    found = sorted(pids)
    return found if len(found) == 2 else None


def test_supervisor_restarts_a_sigkilled_worker_and_stops_gracefully(cli: Cli) -> None:
    supervisor = cli.popen(
        "worker", APP, "--processes", "2", "--concurrency", "2", stderr=subprocess.PIPE
    )
    try:
        first = wait_until(lambda: pair(children(supervisor.pid)))
        wait_until(lambda: len(cli.query(lambda p: p.workers())) == 2, timeout=30)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        def restarted() -> list[int] | None:
            kids = pair(children(supervisor.pid))
            return kids if kids and victim not in kids else None

        replaced = wait_until(restarted)
        wait_until(
            lambda: {w.pid for w in cli.query(lambda p: p.workers())} >= set(replaced),
            timeout=30,
        )
        job_ids = [cli.json("enqueue", APP, "add", f'{{"a": {i}, "b": 1}}')["id"] for i in range(3)]

        async def statuses(processor: JobProcessor) -> list[str]:
            return [(await processor.get(i)).status for i in job_ids]

        wait_until(lambda: cli.query(statuses) == ["finished"] * 3)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        _, err = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 0
    assert f"pid {victim} exited (exit status -9)" in err
    assert err.count("stopped (exit status 0)") == 2
    # The two live children unregistered on the way out; only the killed one's row may
    # remain, when no worker lived long enough after its lease expired to recover it.
    assert {w.pid for w in cli.query(lambda p: p.workers())} <= {victim}


def test_restart_delay_backs_off_and_caps() -> None:
    assert [restart_delay(n, base=0.5, cap=3) for n in range(5)] == [0.5, 1, 2, 3, 3]
    assert restart_delay(5_000, base=0.5, cap=3) == 3  # days of crash-looping: no overflow


def test_supervisor_keeps_the_count_of_any_command(tmp_path: Path) -> None:
    events: list[ChildEvent] = []
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    sup = Supervisor(sleeper, 2, restart_base=0.05, stop_timeout=5, on_event=events.append)
    thread = threading.Thread(target=sup.run)
    thread.start()
    try:
        first = wait_until(lambda: pair(sup.pids))
        os.kill(first[0], signal.SIGKILL)
        wait_until(lambda: len(sup.pids) == 2 and first[0] not in sup.pids)
        assert sup.restarts == 1
    finally:
        sup.stop()
        thread.join(timeout=20)
    kinds = [(e.kind, e.returncode) for e in events]
    assert kinds.count(("started", None)) == 3
    assert ("exited", -9) in kinds
    assert [k for k, _ in kinds].count("stopped") == 2
    assert sup.pids == []


def test_supervisor_refuses_zero_processes() -> None:
    with pytest.raises(ValueError, match="processes must be >= 1"):
        Supervisor(["true"], 0)
