"""DataLoader: batched, deduplicated and cached loading by key, on top of ``Batcher``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    MutableMapping,
    Sequence,
)
from typing import Any, Generic, Literal, Self, TypeVar, overload

from ._batcher import Batcher
from ._perloop import PerLoop

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class _Load(Generic[K, V]):
    """One cache key in flight: the first original key and everyone waiting for it."""

    __slots__ = ("cache_key", "key", "waiters")

    def __init__(self, key: K, cache_key: Hashable, first: asyncio.Future[V]) -> None:
        self.key = key
        self.cache_key = cache_key
        self.waiters = [first]


class _LoopState(Generic[K, V]):
    """What a DataLoader keeps per event loop: its batcher and the loads in flight."""

    __slots__ = ("batcher", "in_flight", "loop", "queued", "senders")

    def __init__(self, batcher: Batcher[_Load[K, V], V]) -> None:
        self.batcher = batcher
        self.in_flight: dict[Hashable, _Load[K, V]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queued: list[_Load[K, V]] = []  # new loads of this tick, not yet submitted
        self.senders: set[asyncio.Task[None]] = set()


class DataLoader(Generic[K, V]):
    """Load values by key: equal keys in flight are loaded once, keys are batched into one
    call of ``batch_load_fn``, and (with ``cache``) values are kept for later loads.

    ``batch_load_fn(keys)`` gets a list of distinct keys (by ``cache_key``; each the first
    key given for its group) and returns one entry per key, in order: a value (``None``
    is a valid value) or an exception instance, which fails only that key. A raise fails
    every key of the batch; a wrong number of entries gives each key
    ``BatchResultError``. Failures are never cached, and a failed key is evicted from the
    cache. ``batch_load_fn`` is normally ``async``; a plain ``def`` runs on the loop, so it
    should be quick.

    Options: ``max_size`` keys per call; ``max_wait`` seconds a key may wait for others
    (``0``: the keys asked for in the same event-loop tick share a call);
    ``max_concurrency`` calls at once; ``cache=False`` keeps no values (but still
    deduplicates keys in flight); ``cache_map`` any ``MutableMapping`` to keep values in
    (an ``LRUCache`` for a bound or a TTL); ``cache_key(key) -> hashable`` for keys that
    are not hashable or that should compare differently. It is built without a running
    loop and keeps one batcher per running loop, so a module-level loader works across
    loops; its cache is shared by all of them.

    Example::

        async def load_users(ids: list[int]) -> list[User | None]:
            rows = await db.fetch("select * from users where id = any($1)", ids)
            by_id = {row["id"]: User(**row) for row in rows}
            return [by_id.get(i) for i in ids]

        users = DataLoader(load_users, max_size=100)
        alice, bob = await asyncio.gather(users.load(1), users.load(2))  # one query
        everyone = await users.load_many([1, 2, 3])                      # 1, 2 cached
        users.prime(7, User(id=7)).clear(1)
    """

    def __init__(
        self,
        batch_load_fn: Callable[
            [list[K]], Awaitable[Sequence[V | BaseException]] | Sequence[V | BaseException]
        ],
        *,
        max_size: int = 100,
        max_wait: float = 0,
        cache: bool = True,
        cache_map: MutableMapping[Any, V] | None = None,
        cache_key: Callable[[K], Hashable] | None = None,
        max_concurrency: int = 1,
    ) -> None:
        self._load_fn = batch_load_fn
        self._cache = cache
        self._cache_map: MutableMapping[Any, V] = {} if cache_map is None else cache_map
        self._cache_key = cache_key
        name = f"DataLoader({getattr(batch_load_fn, '__qualname__', batch_load_fn)!r})"

        def new_state() -> _LoopState[K, V]:
            batcher: Batcher[_Load[K, V], V] = Batcher(
                self._run_batch,
                max_size=max_size,
                max_wait=max_wait,
                max_concurrency=max_concurrency,
                name=name,
            )
            return _LoopState(batcher)

        # The spare is built now so that bad options fail here, not at the first load.
        self._states: PerLoop[_LoopState[K, V]] = PerLoop(new_state, spare=new_state())
        self._max_size = max_size
        self._current: tuple[_LoopState[K, V], asyncio.AbstractEventLoop] | None = None

    @property
    def batcher(self) -> Batcher[Any, V]:
        """The ``Batcher`` of the running loop (for ``stats``); outside a loop the last one.

        Example::

            print(users.batcher.stats.mean_size)
        """
        return self._states.current().batcher

    def load(self, key: K) -> asyncio.Future[V]:
        """Load one key: ``value = await loader.load(key)``.

        The value comes from the cache, from a load of an equal key already in flight, or
        from the next batch; a failure is raised by the ``await``. ``load`` schedules the
        load at once and returns an ``asyncio.Future`` (not a coroutine), so gathering
        many loads costs no task each; every call gets its own future, so a caller that
        is cancelled never cancels the load for the others. Needs a running loop.

        Example::

            user = await users.load(42)
            a, b = await asyncio.gather(users.load(1), users.load(2))  # one batch
        """
        # The hot path of a resolver: a cache hit should cost little more than the
        # resolved future it returns, so the common case is spelled out inline.
        cache_key = key if self._cache_key is None else self._cache_key(key)
        loop = asyncio.get_running_loop()
        current = self._current
        state = current[0] if current is not None and current[1] is loop else self._state()[0]
        if self._cache:
            # get() rather than [] and KeyError: a miss raises nothing, and a mapping
            # with __missing__ (a defaultdict) cannot invent values.
            value = self._cache_map.get(cache_key, _MISSING)
            if value is not _MISSING:
                future: asyncio.Future[V] = loop.create_future()
                future.set_result(value)
                return future
        return self._enqueue(state, loop, key, cache_key)

    @overload
    async def load_many(
        self, keys: Iterable[K], *, return_exceptions: Literal[False] = False
    ) -> list[V]: ...
    @overload
    async def load_many(
        self, keys: Iterable[K], *, return_exceptions: Literal[True]
    ) -> list[V | BaseException]: ...
    async def load_many(
        self, keys: Iterable[K], *, return_exceptions: bool = False
    ) -> list[V] | list[V | BaseException]:
        """Load several keys (batched together); return their values in order.

        Waits for every key, then raises the failure of the first failed key in ``keys``
        order, unless ``return_exceptions=True``, which puts each failure in its place.

        Example::

            found = await users.load_many([1, 2, 3], return_exceptions=True)
        """
        state, loop = self._state()
        cache_key_of = self._cache_key
        cache_map = self._cache_map if self._cache else None
        slots: list[Any] = []
        loaded: list[bool] = []  # per slot: a future of ours (True) or a cached value
        ours: dict[Hashable, asyncio.Future[V]] = {}
        for key in keys:
            cache_key = key if cache_key_of is None else cache_key_of(key)
            future = ours.get(cache_key)
            if future is None:
                if cache_map is not None:
                    value = cache_map.get(cache_key, _MISSING)
                    if value is not _MISSING:
                        slots.append(value)
                        loaded.append(False)
                        continue
                future = ours[cache_key] = self._enqueue(state, loop, key, cache_key)
            slots.append(future)
            loaded.append(True)
        await _settled(ours.values())
        results: list[V | BaseException] = []
        for slot, is_future in zip(slots, loaded, strict=True):
            if not is_future:
                results.append(slot)
                continue
            exc = slot.exception()
            if exc is not None and not return_exceptions:
                raise exc
            results.append(slot.result() if exc is None else exc)
        return results

    def prime(self, key: K, value: V) -> Self:
        """Put ``value`` in the cache for ``key`` unless the key is already cached (``clear``
        it first to replace it). Does nothing with ``cache=False``.

        Example::

            users.prime(user.id, user)
        """
        if self._cache:
            cache_key = key if self._cache_key is None else self._cache_key(key)
            if cache_key not in self._cache_map:
                self._cache_map[cache_key] = value
        return self

    def clear(self, key: K) -> Self:
        """Forget ``key``: drop its cached value; a load in flight is no longer shared with
        later loads and will not fill the cache.

        Example::

            await rename_user(42, "ada")
            users.clear(42)
        """
        cache_key = key if self._cache_key is None else self._cache_key(key)
        self._cache_map.pop(cache_key, None)
        for state in self._states.values():
            state.in_flight.pop(cache_key, None)
        return self

    def clear_all(self) -> Self:
        """Forget every key: empty the ``cache_map`` and detach every load in flight.

        Example::

            users.clear_all()
        """
        self._cache_map.clear()
        for state in self._states.values():
            state.in_flight.clear()
        return self

    def _state(self) -> tuple[_LoopState[K, V], asyncio.AbstractEventLoop]:
        loop = asyncio.get_running_loop()
        current = self._current
        if current is not None and current[1] is loop:
            return current
        state = self._states.get()
        state.loop = loop
        # Loads come in runs on one loop: remember it rather than look it up each time.
        self._current = current = (state, loop)
        return current

    def _enqueue(
        self, state: _LoopState[K, V], loop: asyncio.AbstractEventLoop, key: K, cache_key: Hashable
    ) -> asyncio.Future[V]:
        future: asyncio.Future[V] = loop.create_future()
        load = state.in_flight.get(cache_key)
        if load is not None:
            load.waiters.append(future)
            return future
        load = _Load(key, cache_key, future)
        state.in_flight[cache_key] = load
        queued = state.queued
        queued.append(load)
        if len(queued) == 1:  # the first new key of this tick
            self._spawn(self._send(state), state, loop)
        return future

    def _spawn(
        self,
        coro: Coroutine[Any, Any, None],
        state: _LoopState[K, V],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        task = loop.create_task(coro)
        state.senders.add(task)
        task.add_done_callback(state.senders.discard)

    async def _send(self, state: _LoopState[K, V]) -> None:
        # Runs one tick after the first load, so every load of that tick is queued by
        # now. ``submit_many`` costs far less per key than one ``put`` each; one chunk
        # per batch lets each batch's keys be answered as soon as that batch is done.
        loads, state.queued = state.queued, []
        size = self._max_size
        loop = asyncio.get_running_loop()
        for start in range(size, len(loads), size):
            self._spawn(self._send_chunk(state, loads[start : start + size]), state, loop)
        await self._send_chunk(state, loads[:size])

    async def _send_chunk(self, state: _LoopState[K, V], loads: list[_Load[K, V]]) -> None:
        outcomes: Sequence[V | BaseException]
        try:
            outcomes = await state.batcher.submit_many(loads, return_exceptions=True)
        except Exception as exc:  # the batch could not even be handed over
            outcomes = [exc] * len(loads)
        # Delivered inline, not by a method call per key: this runs for every key loaded.
        cache_map = self._cache_map if self._cache else None
        in_flight = state.in_flight
        for load, outcome in zip(loads, outcomes, strict=True):
            cache_key = load.cache_key
            # A load detached by clear() must neither fill the cache nor evict a newer value.
            current = in_flight.get(cache_key) is load
            if current:
                del in_flight[cache_key]
            if isinstance(outcome, BaseException):
                if current:
                    self._cache_map.pop(cache_key, None)
                for future in load.waiters:
                    if not future.done():
                        future.set_exception(outcome)
                continue
            if current and cache_map is not None:
                cache_map[cache_key] = outcome
            for future in load.waiters:
                if not future.done():
                    future.set_result(outcome)

    async def _run_batch(self, loads: list[_Load[K, V]]) -> Sequence[V | BaseException]:
        values = self._load_fn([load.key for load in loads])
        if inspect.isawaitable(values):
            return await values
        return values


async def _settled(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Wait until every future is done, without raising their exceptions.

    Awaiting them one by one suspends about once per batch (they finish batch by batch),
    which is far cheaper than ``gather``'s callback per future. If the caller is
    cancelled, the rest are cancelled too, so no failure is left unretrieved.
    """
    pending = [future for future in futures if not future.done()]
    try:
        for future in pending:
            if not future.done():
                with contextlib.suppress(Exception):
                    await future
    except BaseException:
        for future in pending:
            future.cancel()
        raise
