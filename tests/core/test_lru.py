"""LRUCache: eviction order, use on read and write, ttl with an injected clock."""

from __future__ import annotations

import threading
from collections.abc import MutableMapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchwork import LRUCache


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_is_a_mutable_mapping() -> None:
    cache: LRUCache[str, int] = LRUCache(3)
    assert isinstance(cache, MutableMapping)
    cache["a"] = 1
    cache.update(b=2)
    assert dict(cache) == {"a": 1, "b": 2}
    assert cache.pop("a") == 1
    assert "a" not in cache
    assert cache.get("a") is None
    assert cache.setdefault("c", 3) == 3
    assert len(cache) == 2


def test_evicts_least_recently_written() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache["a"] = 1
    cache["b"] = 2
    cache["c"] = 3
    assert list(cache) == ["b", "c"]


def test_read_counts_as_use() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache["a"] = 1
    cache["b"] = 2
    assert cache["a"] == 1
    cache["c"] = 3
    assert list(cache) == ["a", "c"]


def test_get_counts_as_use() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache["a"] = 1
    cache["b"] = 2
    assert cache.get("a") == 1
    cache["c"] = 3
    assert "b" not in cache
    assert "a" in cache


def test_rewrite_counts_as_use() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache["a"] = 1
    cache["b"] = 2
    cache["a"] = 10
    cache["c"] = 3
    assert dict(cache) == {"a": 10, "c": 3}


def test_membership_does_not_count_as_use() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache["a"] = 1
    cache["b"] = 2
    assert "a" in cache
    cache["c"] = 3
    assert "a" not in cache


def test_none_is_a_value() -> None:
    cache: LRUCache[str, None] = LRUCache(2)
    cache["a"] = None
    assert "a" in cache
    assert cache["a"] is None
    assert cache.get("a", 5) is None


def test_missing_key() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    with pytest.raises(KeyError):
        cache["x"]
    with pytest.raises(KeyError):
        del cache["x"]


def test_ttl_expires_entries() -> None:
    clock = ManualClock()
    cache: LRUCache[str, int] = LRUCache(10, ttl=5.0, clock=clock)
    cache["a"] = 1
    clock.now = 4.999
    assert cache["a"] == 1
    clock.now = 5.0
    assert "a" not in cache
    assert cache.get("a") is None
    with pytest.raises(KeyError):
        cache["a"]
    assert len(cache) == 0
    assert list(cache) == []


def test_ttl_counts_from_last_write_not_read() -> None:
    clock = ManualClock()
    cache: LRUCache[str, int] = LRUCache(10, ttl=5.0, clock=clock)
    cache["a"] = 1
    clock.now = 3.0
    assert cache["a"] == 1
    clock.now = 5.0
    assert "a" not in cache
    cache["a"] = 2
    clock.now = 9.0
    assert cache["a"] == 2


def test_expired_entries_are_not_counted_and_leave_room() -> None:
    clock = ManualClock()
    cache: LRUCache[str, int] = LRUCache(2, ttl=1.0, clock=clock)
    cache["a"] = 1
    clock.now = 0.5
    cache["b"] = 2
    clock.now = 1.2  # "a" expired, "b" alive
    assert len(cache) == 1
    cache["c"] = 3
    cache["d"] = 4  # full of live entries: evicts the oldest live one, "b"
    assert list(cache) == ["c", "d"]


def test_delete_expired_is_key_error() -> None:
    clock = ManualClock()
    cache: LRUCache[str, int] = LRUCache(2, ttl=1.0, clock=clock)
    cache["a"] = 1
    clock.now = 1.0
    with pytest.raises(KeyError):
        del cache["a"]


@pytest.mark.parametrize(("maxsize", "ttl", "name"), [(0, None, "maxsize"), (1, 0.0, "ttl")])
def test_invalid_options(maxsize: int, ttl: float | None, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LRUCache(maxsize, ttl=ttl)


def test_clear_and_repr() -> None:
    cache: LRUCache[int, int] = LRUCache(4)
    cache.update({1: 1, 2: 2})
    assert "len=2" in repr(cache)
    cache.clear()
    assert len(cache) == 0


def test_threads_share_one_cache() -> None:
    cache: LRUCache[int, int] = LRUCache(50)
    start = threading.Barrier(4)

    def work(offset: int) -> None:
        start.wait(timeout=10)
        for i in range(2000):
            cache[offset * 10_000 + i] = i
            cache.get(offset * 10_000 + i // 2)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(cache) == 50


@given(
    st.integers(min_value=1, max_value=6),
    st.lists(st.tuples(st.booleans(), st.integers(0, 9)), max_size=60),
)
def test_matches_a_reference_model(maxsize: int, ops: list[tuple[bool, int]]) -> None:
    cache: LRUCache[int, int] = LRUCache(maxsize)
    model: list[int] = []  # keys, least recently used first
    for write, key in ops:
        if write:
            cache[key] = key
            if key in model:
                model.remove(key)
            model.append(key)
            del model[:-maxsize]
        elif key in model:
            assert cache[key] == key
            model.remove(key)
            model.append(key)
        else:
            assert key not in cache
    assert list(cache) == model
