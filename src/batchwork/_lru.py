"""A bounded mapping that forgets the least recently used entry, with an optional TTL."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, MutableMapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(MutableMapping[K, V]):
    """A mapping of at most ``maxsize`` entries that drops the least recently used one.

    Reading an entry (``cache[key]``, ``get``) and writing it both count as use and move
    it to the most recent end; ``key in cache`` is a plain membership test and does not.
    With ``ttl`` (seconds), an entry expires that long after it was last *written*: an
    expired entry is absent to ``in``, ``get``, ``[]``, ``len`` and iteration, and is
    dropped lazily. ``clock`` is the monotonic time source (``time.monotonic``); tests pass
    their own. All operations hold a lock, so one cache can be shared between threads.

    Meant as a ``DataLoader`` ``cache_map``, but it is an ordinary ``MutableMapping``.

    Example::

        users = DataLoader(load_users, cache_map=LRUCache(10_000, ttl=60.0))

        cache = LRUCache(2)
        cache["a"] = 1
        cache["b"] = 2
        cache["a"]          # "a" is now the most recently used
        cache["c"] = 3      # evicts "b"
        assert list(cache) == ["a", "c"]
    """

    __slots__ = ("_clock", "_data", "_lock", "maxsize", "ttl")

    def __init__(
        self,
        maxsize: int,
        ttl: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize!r}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be > 0 when given, got {ttl!r}")
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        # key -> (value, expires_at); expires_at is +inf without a ttl.
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: K) -> tuple[V, float] | None:
        """The entry for ``key`` if present and not expired (an expired one is dropped)."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._data[key]
            return None
        return entry

    def _purge(self) -> None:
        if self.ttl is None:
            return
        now = self._clock()
        # Insertion order is not expiry order once entries are re-read, so scan all.
        for key in [k for k, (_, expires_at) in self._data.items() if expires_at <= now]:
            del self._data[key]

    def __getitem__(self, key: K) -> V:
        with self._lock:
            entry = self._live(key)
            if entry is None:
                raise KeyError(key)
            self._data.move_to_end(key)
            return entry[0]

    def __setitem__(self, key: K, value: V) -> None:
        expires_at = float("inf") if self.ttl is None else self._clock() + self.ttl
        with self._lock:
            self._data[key] = (value, expires_at)
            self._data.move_to_end(key)
            if len(self._data) > self.maxsize:
                self._purge()
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __delitem__(self, key: K) -> None:
        with self._lock:
            if self._live(key) is None:
                raise KeyError(key)
            del self._data[key]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return self._live(key) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._data)

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            self._purge()
            keys = list(self._data)
        return iter(keys)

    def clear(self) -> None:
        """Remove every entry.

        Example::

            cache.clear()
        """
        with self._lock:
            self._data.clear()

    def __repr__(self) -> str:
        return f"LRUCache(maxsize={self.maxsize}, ttl={self.ttl}, len={len(self)})"
