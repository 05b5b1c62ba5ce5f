"""DataLoader: batching, in-flight dedupe, cache, prime/clear, failures, loops."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any, assert_type

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchwork import DataLoader, LRUCache
from batchwork.errors import BatchResultError

# Virtual time (looptime) for the async tests: waits take no real time and loop.time()
# is exact.
virtual_time = pytest.mark.looptime


class Source:
    """A batch load function that records its calls; ``fail`` holds keys to fail."""

    def __init__(self, fail: Sequence[Hashable] = ()) -> None:
        self.calls: list[list[Any]] = []
        self.fail = set(fail)
        self.raise_next: BaseException | None = None

    async def __call__(self, keys: list[int]) -> list[str | BaseException]:
        self.calls.append(list(keys))
        await asyncio.sleep(0.001)
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
        return [KeyError(k) if k in self.fail else f"v{k}" for k in keys]


@virtual_time
async def test_keys_of_one_tick_share_one_call() -> None:
    source = Source()
    loader = DataLoader(source)
    values = list(await asyncio.gather(*(loader.load(k) for k in [1, 2, 3])))
    assert values == ["v1", "v2", "v3"]
    assert source.calls == [[1, 2, 3]]


@virtual_time
async def test_max_size_splits_calls() -> None:
    source = Source()
    loader = DataLoader(source, max_size=100)
    values = await loader.load_many(range(250))
    assert values == [f"v{k}" for k in range(250)]
    assert [len(c) for c in source.calls] == [100, 100, 50]


@virtual_time
async def test_max_wait_collects_keys_over_time() -> None:
    source = Source()
    loader = DataLoader(source, max_wait=0.01)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def later(key: int, delay: float) -> str:
        await asyncio.sleep(delay)
        return await loader.load(key)

    assert list(await asyncio.gather(later(1, 0), later(2, 0.005), later(3, 0.02))) == [
        "v1",
        "v2",
        "v3",
    ]
    assert source.calls == [[1, 2], [3]]
    assert loop.time() - start == pytest.approx(0.031)


@virtual_time
async def test_equal_keys_in_flight_load_once_without_cache() -> None:
    source = Source()
    loader = DataLoader(source, cache=False)
    assert list(await asyncio.gather(loader.load(1), loader.load(1), loader.load(2))) == [
        "v1",
        "v1",
        "v2",
    ]
    assert source.calls == [[1, 2]]
    assert await loader.load(1) == "v1"  # nothing kept: loaded again
    assert source.calls == [[1, 2], [1]]


@virtual_time
async def test_dedupe_across_ticks_while_in_flight() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    calls: list[list[int]] = []

    async def gated(keys: list[int]) -> list[str]:
        calls.append(keys)
        entered.set()
        await release.wait()
        return [f"v{k}" for k in keys]

    loader = DataLoader(gated, cache=False)
    first = asyncio.ensure_future(loader.load(1))
    await entered.wait()
    second = asyncio.ensure_future(loader.load(1))
    await asyncio.sleep(0.1)
    release.set()
    assert list(await asyncio.gather(first, second)) == ["v1", "v1"]
    assert calls == [[1]]


@virtual_time
async def test_cache_hit_does_not_call_again() -> None:
    source = Source()
    loader = DataLoader(source)
    assert await loader.load(1) == "v1"
    assert await loader.load(1) == "v1"
    assert await loader.load_many([1, 2]) == ["v1", "v2"]
    assert source.calls == [[1], [2]]


@virtual_time
async def test_none_is_a_value_and_is_cached() -> None:
    calls: list[list[int]] = []

    async def nothing(keys: list[int]) -> list[int | None]:
        calls.append(keys)
        return [None for _ in keys]

    loader = DataLoader(nothing)
    assert await loader.load(1) is None
    assert await loader.load(1) is None
    assert calls == [[1]]


@virtual_time
async def test_prime_clear_and_clear_all() -> None:
    source = Source()
    cache: dict[int, str] = {}
    loader = DataLoader(source, cache_map=cache)
    loader.prime(7, "primed")
    assert await loader.load(7) == "primed"
    loader.prime(7, "ignored: already cached")
    assert await loader.load(7) == "primed"
    assert source.calls == []

    loader.clear(7)
    assert await loader.load(7) == "v7"
    assert await loader.load(8) == "v8"
    assert cache == {7: "v7", 8: "v8"}

    assert loader.clear_all() is loader
    assert cache == {}
    assert await loader.load(8) == "v8"
    assert source.calls == [[7], [8], [8]]


@virtual_time
async def test_prime_without_cache_does_nothing() -> None:
    source = Source()
    loader = DataLoader(source, cache=False)
    loader.prime(1, "primed")
    assert await loader.load(1) == "v1"


@virtual_time
async def test_exception_entry_fails_only_its_key_and_is_not_cached() -> None:
    source = Source(fail=[2])
    loader = DataLoader(source)
    results = await loader.load_many([1, 2, 3], return_exceptions=True)
    assert results[0] == "v1"
    assert isinstance(results[1], KeyError)
    assert results[2] == "v3"
    source.fail.clear()
    assert await loader.load(2) == "v2"
    assert source.calls == [[1, 2, 3], [2]]


@virtual_time
async def test_failed_batch_fails_every_key_and_is_not_cached() -> None:
    source = Source()
    source.raise_next = ConnectionError("db down")
    loader = DataLoader(source)
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await loader.load_many([1, 2]) == ["v1", "v2"]
    assert source.calls == [[1, 2], [1, 2]]


@virtual_time
async def test_failed_batch_evicts_its_keys() -> None:
    source = Source()
    cache: dict[int, str] = {}
    loader = DataLoader(source, cache_map=cache)
    source.raise_next = ConnectionError("db down")
    pending = asyncio.ensure_future(loader.load(1))
    await asyncio.sleep(0)
    cache[1] = "stale"  # written while the key was in flight
    with pytest.raises(ConnectionError):
        await pending
    assert 1 not in cache


@virtual_time
async def test_wrong_number_of_values_is_batch_result_error() -> None:
    async def short(keys: list[int]) -> list[str]:
        return ["only one"]

    loader = DataLoader(short)
    results = await loader.load_many([1, 2, 3], return_exceptions=True)
    assert all(isinstance(r, BatchResultError) for r in results)
    error = results[0]
    assert isinstance(error, BatchResultError)
    assert (error.expected, error.got) == (3, 1)
    assert "3" in str(error)
    assert "1" in str(error)


@virtual_time
async def test_load_many_raises_the_first_failure_in_key_order() -> None:
    source = Source(fail=[3, 2])
    loader = DataLoader(source)
    with pytest.raises(KeyError) as info:
        await loader.load_many([1, 2, 3])
    assert info.value.args == (2,)


@virtual_time
async def test_load_many_mixes_cached_and_loaded_and_duplicates() -> None:
    source = Source()
    loader = DataLoader(source)
    await loader.load(2)
    assert await loader.load_many([1, 2, 1, 3]) == ["v1", "v2", "v1", "v3"]
    assert source.calls == [[2], [1, 3]]
    assert await loader.load_many([]) == []


@virtual_time
async def test_cache_key_drives_dedupe_and_cache_and_first_key_is_passed() -> None:
    seen: list[list[dict[str, int]]] = []

    async def by_id(keys: list[dict[str, int]]) -> list[int]:
        seen.append(keys)
        return [k["id"] * 10 for k in keys]

    loader = DataLoader(by_id, cache_key=lambda k: k["id"])
    first, second = {"id": 1, "n": 1}, {"id": 1, "n": 2}
    assert list(await asyncio.gather(loader.load(first), loader.load(second))) == [10, 10]
    assert len(seen) == 1
    assert len(seen[0]) == 1
    assert seen[0][0] is first
    assert await loader.load({"id": 1}) == 10
    loader.clear({"id": 1, "other": 0})
    loader.prime({"id": 5}, 55)
    assert await loader.load({"id": 5}) == 55
    assert len(seen) == 1


@virtual_time
async def test_lru_cache_as_cache_map() -> None:
    source = Source()
    loader = DataLoader(source, cache_map=LRUCache(2))
    await loader.load_many([1, 2])
    await loader.load(3)  # evicts 1
    await loader.load(1)
    assert source.calls == [[1, 2], [3], [1]]


@virtual_time
async def test_a_cache_map_with_defaults_never_invents_values() -> None:
    source = Source()
    cache: defaultdict[int, str] = defaultdict(lambda: "invented")
    loader = DataLoader(source, cache_map=cache)
    assert await loader.load(1) == "v1"
    assert await loader.load_many([1, 2]) == ["v1", "v2"]
    assert source.calls == [[1], [2]]
    assert dict(cache) == {1: "v1", 2: "v2"}


@virtual_time
async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    source = Source()
    loader = DataLoader(source)
    first = asyncio.ensure_future(loader.load(1))
    second = asyncio.ensure_future(loader.load(1))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "v1"
    assert first.cancelled()


@virtual_time
async def test_clear_while_in_flight_starts_a_fresh_load() -> None:
    source = Source()
    cache: dict[int, str] = {}
    loader = DataLoader(source, cache_map=cache)
    old = asyncio.ensure_future(loader.load(1))
    await asyncio.sleep(0)
    loader.clear(1)
    fresh = asyncio.ensure_future(loader.load(1))
    assert await old == "v1"
    assert 1 not in cache  # the detached load does not fill the cache
    assert await fresh == "v1"
    assert source.calls == [[1], [1]]
    assert cache == {1: "v1"}


@virtual_time
async def test_max_concurrency_bounds_calls_in_flight() -> None:
    running, peak = 0, 0

    async def slow(keys: list[int]) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        return keys

    loader = DataLoader(slow, max_size=10, max_concurrency=2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await loader.load_many(range(50)) == list(range(50))
    assert peak == 2
    assert loop.time() - start == pytest.approx(0.3)  # 5 batches, 2 at a time


@virtual_time
async def test_clear_all_detaches_loads_in_flight() -> None:
    source = Source()
    cache: dict[int, str] = {}
    loader = DataLoader(source, cache_map=cache)
    old = loader.load(1)
    await asyncio.sleep(0)
    loader.clear_all()
    fresh = loader.load(1)
    assert await old == "v1"
    assert await fresh == "v1"
    assert source.calls == [[1], [1]]


@virtual_time
async def test_sync_batch_function() -> None:
    def plain(keys: list[int]) -> list[int]:
        return [k + 1 for k in keys]

    loader = DataLoader(plain)
    assert await loader.load_many([1, 2]) == [2, 3]


@virtual_time
async def test_batcher_stats_are_reachable() -> None:
    source = Source()
    loader = DataLoader(source)
    await loader.load_many([1, 2, 3])
    assert loader.batcher.stats.items == 3
    assert loader.batcher.stats.batches == 1


@virtual_time
async def test_load_returns_a_future_scheduled_at_once() -> None:
    source = Source()
    loader = DataLoader(source)
    future = loader.load(1)
    assert isinstance(future, asyncio.Future)
    await asyncio.sleep(0.01)  # nobody awaits it, yet the load ran
    assert source.calls == [[1]]
    assert future.result() == "v1"
    cached = loader.load(1)
    assert cached.done()  # a cache hit is answered at once


def test_load_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        DataLoader(Source()).load(1)


def test_invalid_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="max_size"):
        DataLoader(Source(), max_size=0)


MODULE_LOADER = DataLoader(Source())  # built with no running loop


def test_module_level_loader_works_across_loops() -> None:
    async def use() -> tuple[str, object]:
        return await MODULE_LOADER.load(1), MODULE_LOADER.batcher

    first_value, first_batcher = asyncio.run(use())
    MODULE_LOADER.clear(1)
    second_value, second_batcher = asyncio.run(use())
    assert first_value == second_value == "v1"
    assert first_batcher is not second_batcher


def test_cache_is_shared_across_loops() -> None:
    source = Source()
    loader = DataLoader(source)

    async def load_four() -> str:
        return await loader.load(4)

    assert asyncio.run(load_four()) == "v4"
    assert asyncio.run(load_four()) == "v4"
    assert source.calls == [[4]]


@virtual_time
async def test_types_are_inferred() -> None:
    loader = DataLoader(Source())
    assert_type(loader, DataLoader[int, str])
    value = await DataLoader(Source()).load(1)
    assert value == "v1"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rounds=st.lists(st.lists(st.integers(0, 30), max_size=40), min_size=1, max_size=4),
    max_size=st.integers(1, 8),
    cache=st.booleans(),
)
def test_property_every_key_gets_its_own_value(
    rounds: list[list[int]], max_size: int, cache: bool
) -> None:
    calls: list[list[int]] = []

    async def square(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        await asyncio.sleep(0)
        return [k * k for k in keys]

    loader = DataLoader(square, max_size=max_size, cache=cache)

    async def run() -> None:
        for keys in rounds:
            singles = [loader.load(k) for k in keys]
            many = loader.load_many(keys)
            got_singles, got_many = await asyncio.gather(asyncio.gather(*singles), many)
            assert got_singles == [k * k for k in keys]
            assert got_many == [k * k for k in keys]

    asyncio.run(run())
    for batch in calls:
        assert 1 <= len(batch) <= max_size
        assert len(set(batch)) == len(batch)  # no key twice in a call
    if cache:
        loaded = [k for batch in calls for k in batch]
        assert len(loaded) == len(set(loaded))  # no key loaded twice
