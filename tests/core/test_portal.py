"""BlockingPortal: one loop thread, blocking calls from any thread, clean close."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from batchwork._portal import BlockingPortal, PortalClosed


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    p = BlockingPortal(name="test-portal")
    yield p
    p.close()


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_starts_lazily_and_runs_coroutines(portal: BlockingPortal) -> None:
    assert not portal.started
    assert portal.call(double, 21) == 42
    assert portal.started


def test_runs_on_one_named_thread(portal: BlockingPortal) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert portal.call(where) == "test-portal"
    assert portal.call_sync(lambda: threading.current_thread().name) == "test-portal"


def test_exceptions_reach_the_caller(portal: BlockingPortal) -> None:
    async def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        portal.call(boom)

    def sync_boom() -> None:
        raise ValueError("y")

    with pytest.raises(ValueError, match="y"):
        portal.call_sync(sync_boom)


def test_many_threads_share_the_loop(portal: BlockingPortal) -> None:
    results: dict[int, int] = {}
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait(timeout=10)
        results[n] = portal.call(double, n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {n: 2 * n for n in range(8)}


def test_close_joins_the_thread_and_refuses_later_calls() -> None:
    portal = BlockingPortal(name="closing-portal")
    portal.call(double, 1)
    thread = next(t for t in threading.enumerate() if t.name == "closing-portal")
    portal.close()
    assert not thread.is_alive()
    assert portal.closed
    assert not portal.started
    with pytest.raises(PortalClosed):
        portal.call(double, 1)
    with pytest.raises(PortalClosed):
        portal.call_soon(print)
    portal.close()  # twice is harmless


def test_close_without_start() -> None:
    portal = BlockingPortal()
    portal.close()
    with pytest.raises(PortalClosed):
        portal.call(double, 1)


def test_close_cancels_a_call_still_running() -> None:
    portal = BlockingPortal()
    entered = threading.Event()

    async def forever() -> None:
        entered.set()
        await asyncio.Event().wait()

    future = portal.submit(forever)
    assert entered.wait(timeout=10)
    portal.close()
    assert future.cancelled()


def test_scheduled_before_close_runs_before_stop() -> None:
    portal = BlockingPortal()
    ran: list[int] = []
    portal.call_soon(ran.append, 1)
    portal.close()
    assert ran == [1]


def test_blocking_call_from_the_loop_thread_is_refused(portal: BlockingPortal) -> None:
    async def reenter() -> None:
        portal.call(double, 1)

    with pytest.raises(RuntimeError, match="deadlock"):
        portal.call(reenter)
