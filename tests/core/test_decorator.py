"""@batched: async functions, plain functions, methods, several event loops."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import assert_type

import pytest

from batchwork import Batcher, SyncBatcher, batched
from batchwork._decorator import AsyncBatched, SyncBatched
from batchwork.errors import BatcherClosed

# Virtual time (looptime) for the async tests: waits take no real time and loop.time()
# is exact.
virtual_time = pytest.mark.looptime

DEADLINE = 20.0

SIZES: list[int] = []


@batched(max_size=4, max_wait=0.05)
async def square(items: list[int]) -> list[int]:
    """Squares a batch."""
    SIZES.append(len(items))
    return [i * i for i in items]


@batched
async def shout(words: list[str]) -> list[str]:
    return [w.upper() for w in words]


@virtual_time
async def test_async_function_takes_one_item_and_batches() -> None:
    SIZES.clear()
    results = await asyncio.gather(*(square(i) for i in range(10)))
    assert list(results) == [i * i for i in range(10)]
    assert SIZES == [4, 4, 2]
    assert_type(await square(3), int)


@virtual_time
async def test_a_lone_item_waits_max_wait_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await square(5) == 25
    assert loop.time() - start == pytest.approx(0.05)


@virtual_time
async def test_bare_decorator_uses_the_defaults() -> None:
    assert await shout("hi") == "HI"
    assert isinstance(shout, AsyncBatched)
    assert shout.batcher.stats.items >= 1


def test_wrapper_keeps_name_and_doc() -> None:
    assert square.__name__ == "square"  # type: ignore[attr-defined]
    assert square.__doc__ == "Squares a batch."
    assert square.__wrapped__ is not None  # type: ignore[attr-defined]


@virtual_time
async def test_batcher_is_reachable_and_typed() -> None:
    await square(2)
    batcher = square.batcher
    assert_type(batcher, Batcher[int, int])
    assert isinstance(batcher, Batcher)
    assert batcher.stats.items >= 1
    assert square.batcher is batcher  # the same one for this loop


def test_module_level_function_works_across_loops() -> None:
    batchers: list[Batcher[int, int]] = []

    async def use() -> int:
        value = await square(3)
        batchers.append(square.batcher)
        return value

    assert asyncio.run(use()) == 9
    assert asyncio.run(use()) == 9
    assert batchers[0] is not batchers[1]
    assert square.batcher is batchers[1]  # outside a loop: the last one used


def test_loops_in_two_threads_at_once() -> None:
    results: dict[int, list[int]] = {}
    start = threading.Barrier(2)

    def run(n: int) -> None:
        async def use() -> list[int]:
            return list(await asyncio.gather(*(square(n * 100 + i) for i in range(20))))

        start.wait(timeout=DEADLINE)
        results[n] = asyncio.run(use())

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE)
    assert results == {n: [(n * 100 + i) ** 2 for i in range(20)] for n in range(2)}


@virtual_time
async def test_after_close_calls_raise_batcher_closed() -> None:
    @batched(max_size=2, max_wait=0.01)
    async def echo(items: list[str]) -> list[str]:
        return items

    assert await echo("a") == "a"
    await echo.batcher.close()
    with pytest.raises(BatcherClosed):
        await echo("b")


def test_close_is_per_loop() -> None:
    @batched(max_size=2, max_wait=0.01)
    async def echo(items: list[str]) -> list[str]:
        return items

    async def close_it() -> None:
        await echo("a")
        await echo.batcher.close()
        with pytest.raises(BatcherClosed):
            await echo("b")

    asyncio.run(close_it())
    assert asyncio.run(echo("c")) == "c"  # a new loop gets a new batcher


@virtual_time
async def test_invalid_options_fail_at_decoration() -> None:
    with pytest.raises(ValueError, match="max_size"):

        @batched(max_size=0)
        async def nothing(items: list[int]) -> list[int]:
            return items


def test_sync_function_is_blocking_and_thread_safe() -> None:
    calls: list[list[int]] = []

    @batched(max_size=8, max_wait=0.001)
    def triple(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [3 * i for i in items]

    assert isinstance(triple, SyncBatched)
    results: dict[int, list[int]] = {}
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait(timeout=DEADLINE)
        results[t] = [triple(t * 100 + i) for i in range(50)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE)
    assert results == {t: [3 * (t * 100 + i) for i in range(50)] for t in range(8)}
    assert max(len(c) for c in calls) <= 8
    assert_type(triple(1), int)
    assert_type(triple.batcher, SyncBatcher[int, int])
    triple.batcher.close()
    with pytest.raises(BatcherClosed):
        triple(1)


def test_sync_function_exceptions_reach_the_caller() -> None:
    @batched(max_wait=0.001)
    def picky(items: list[int]) -> list[int | BaseException]:
        return [ValueError(i) if i < 0 else i for i in items]

    with pytest.raises(ValueError, match="-2"):
        picky(-2)
    assert picky(2) == 2
    picky.batcher.close()


class Embedder:
    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.calls: list[list[int]] = []

    @batched(max_size=3, max_wait=0.01)
    async def embed(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        return [i + self.offset for i in items]


@virtual_time
async def test_async_method_has_one_batcher_per_instance() -> None:
    a, b = Embedder(100), Embedder(200)
    results = await asyncio.gather(*(a.embed(i) for i in range(4)), *(b.embed(i) for i in range(2)))
    assert list(results) == [100, 101, 102, 103, 200, 201]
    assert a.calls == [[0, 1, 2], [3]]
    assert b.calls == [[0, 1]]
    assert a.embed.batcher is not b.embed.batcher
    assert a.embed is a.embed
    assert_type(a.embed.batcher, Batcher[int, int])
    assert_type(await a.embed(1), int)


def test_method_batcher_on_the_class_is_an_error() -> None:
    with pytest.raises(AttributeError, match="per instance"):
        Embedder.embed.batcher  # noqa: B018


def test_async_method_across_loops() -> None:
    embedder = Embedder(1)
    assert asyncio.run(embedder.embed(1)) == 2
    assert asyncio.run(embedder.embed(2)) == 3


class Repo:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    @batched(max_size=10, max_wait=0.001)
    def get(self, ids: list[int]) -> list[str]:
        self.calls.append(list(ids))
        return [f"row{i}" for i in ids]


def test_sync_method_has_one_sync_batcher_per_instance() -> None:
    first, second = Repo(), Repo()
    assert first.get(1) == "row1"
    assert second.get(2) == "row2"
    assert first.calls == [[1]]
    assert second.calls == [[2]]
    assert first.get.batcher is not second.get.batcher
    assert_type(first.get.batcher, SyncBatcher[int, str])
    first.get.batcher.close()
    with pytest.raises(BatcherClosed):
        first.get(3)
    assert second.get(4) == "row4"
    second.get.batcher.close()


def test_method_on_a_class_without_dict_is_refused() -> None:
    class Slotted:
        __slots__ = ()

        @batched
        async def load(self, items: list[int]) -> list[int]:
            return items

    with pytest.raises(TypeError, match="__dict__"):
        Slotted().load  # noqa: B018


def test_method_batcher_gets_a_descriptive_name() -> None:
    repo = Repo()
    assert "Repo.get" in repo.get.batcher.batcher.name
    repo.get.batcher.close()


def test_a_collected_instance_stops_its_batcher_thread() -> None:
    repo = Repo()
    assert repo.get(1) == "row1"
    name = f"batchwork-{repo.get.batcher.batcher.name}"
    thread = next(t for t in threading.enumerate() if t.name == name)
    del repo
    gc.collect()
    thread.join(timeout=DEADLINE)
    assert not thread.is_alive()
