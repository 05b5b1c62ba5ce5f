"""Progress events of a TaskRunner and the lazy, terminal-only progress bar."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

import batchwork
from batchwork import Progress, TaskRunner
from batchwork._progress import open_bar


@pytest.mark.looptime
async def test_on_progress_once_per_task_end_with_consistent_counters() -> None:
    events: list[Progress] = []

    async def sleep_then(delay: float, fail: bool = False) -> None:
        await asyncio.sleep(delay)
        if fail:
            raise ValueError("x")

    async def after(need_result: None, delay: float) -> None:
        await asyncio.sleep(delay)

    runner = TaskRunner(concurrency=2, on_progress=events.append)
    first = runner.push(sleep_then, 1)  # 0 -> 1
    failing = runner.push(sleep_then, 2, True, name="failing")  # 0 -> 2
    runner.push(sleep_then, 2)  # 1 -> 3
    runner.push(after, 1, needs=[first])  # 2 -> 3
    runner.push(sleep_then, needs=[failing], on_needs_failed="skip")  # skipped at 2
    await runner.start(return_exceptions=True)

    assert len(events) == 5  # exactly once per task end, the skipped one included
    assert [p.done for p in events] == [1, 2, 3, 4, 5]
    for p in events:
        assert p.done == p.succeeded + p.failed + p.skipped
        assert p.total == 5
        assert 0 <= p.running <= 2
        assert p.task is not None
        assert p.task.done()
    first_event, failed_event, skipped_event = events[:3]
    assert (first_event.elapsed, first_event.rate, first_event.running) == (1, 1.0, 1)
    assert first_event.eta == pytest.approx(4.0)  # 4 left at 1 task/s
    assert (failed_event.failed, failed_event.task) == (1, failing)
    assert (skipped_event.skipped, skipped_event.elapsed) == (1, 2)
    last = events[-1]
    assert (last.succeeded, last.failed, last.skipped, last.running) == (3, 1, 1, 0)
    assert (last.elapsed, last.eta, last.percent) == (3, 0.0, 100.0)
    assert last.rate == pytest.approx(5 / 3)


async def test_progress_percent_and_frozen() -> None:
    p = Progress(
        total=4,
        done=0,
        succeeded=0,
        failed=0,
        skipped=0,
        running=0,
        elapsed=0.0,
        rate=0.0,
        eta=None,
    )
    assert p.percent == 0.0
    assert dataclasses.replace(p, total=0).percent == 100.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.done = 1  # type: ignore[misc]


async def test_runner_progress_snapshot_outside_a_run() -> None:
    runner = TaskRunner()
    runner.push(print)
    snapshot = runner.progress
    assert (snapshot.total, snapshot.done, snapshot.eta, snapshot.task) == (1, 0, None, None)


async def test_total_grows_when_tasks_are_pushed_while_running() -> None:
    totals: list[tuple[int, int]] = []
    runner = TaskRunner(concurrency=1, on_progress=lambda p: totals.append((p.done, p.total)))

    async def child() -> None:
        pass

    async def parent() -> None:
        runner.push(child)
        runner.push(child)

    runner.push(parent)
    await runner.start()
    assert totals == [(1, 3), (2, 3), (3, 3)]


# -- the bar -----------------------------------------------------------------------------


def _snapshot(done: int, total: int) -> Progress:
    return Progress(
        total=total,
        done=done,
        succeeded=done,
        failed=0,
        skipped=0,
        running=1,
        elapsed=1.0,
        rate=float(done),
        eta=float(total - done),
    )


async def test_the_bar_draws_on_a_terminal() -> None:
    out = io.StringIO()
    bar = open_bar(Console(file=out, force_terminal=True, width=100))
    bar.update(_snapshot(3, 4))
    bar.close()
    drawn = out.getvalue()
    assert "3/4" in drawn
    assert "3.0/s" in drawn


async def test_the_bar_draws_nothing_off_a_terminal() -> None:
    out = io.StringIO()
    bar = open_bar(Console(file=out, force_terminal=False))
    bar.update(_snapshot(1, 2))
    bar.close()
    assert out.getvalue() == ""


async def test_progress_bar_run_off_a_terminal_prints_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async def ok(i: int) -> int:
        return i

    assert await batchwork.map(ok, range(5), progress_bar=True) == list(range(5))
    assert capfd.readouterr() == ("", "")


async def test_rich_is_imported_only_when_a_run_with_a_bar_starts() -> None:
    # A fresh interpreter: creating runners and pushing needs no event loop and no rich.
    script = textwrap.dedent(
        """
        import asyncio, sys
        import batchwork

        async def ok():
            return 1

        plain = batchwork.TaskRunner()
        plain.push(ok)
        with_bar = batchwork.TaskRunner(progress_bar=True)
        with_bar.push(ok)
        print("rich" in sys.modules)

        async def main():
            await plain.start()
            print("rich" in sys.modules)
            await with_bar.start()
            print("rich" in sys.modules)

        asyncio.run(main())
        """
    )
    src = str(Path(batchwork.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert stderr == b""
    assert stdout.split() == [b"False", b"False", b"True"]
