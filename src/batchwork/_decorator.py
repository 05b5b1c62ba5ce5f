"""``@batched``: turn a function of a whole batch into a function of one item."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar, cast, overload

from ._batcher import Batcher
from ._keyconfig import BatchResult
from ._perloop import PerLoop
from ._sync import SyncBatcher

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])

AsyncBatchFn = Callable[[list[T]], Coroutine[Any, Any, BatchResult[R]]]
SyncBatchFn = Callable[[list[T]], BatchResult[R]]
AsyncBatchMethod = Callable[[S, list[T]], Coroutine[Any, Any, BatchResult[R]]]
SyncBatchMethod = Callable[[S, list[T]], BatchResult[R]]


class AsyncBatched(Generic[T, R]):
    """An ``async`` function of ONE item, batched underneath (made by ``@batched``).

    ``await f(item)`` submits the item to the batcher of the running event loop (one per
    loop, so a module-level function works across loops) and returns its own result.
    ``f.batcher`` is that loop's ``Batcher`` (outside a loop: the last one used); after
    ``await f.batcher.close()``, ``f(...)`` on that loop raises ``BatcherClosed``.

    Example::

        @batched(max_size=64, max_wait=0.002)
        async def embed(texts: list[str]) -> list[list[float]]: ...

        vector = await embed("hello")
        print(embed.batcher.stats.mean_size)
    """

    def __init__(self, fn: Callable[[list[T]], Any], options: dict[str, Any]) -> None:
        self._batchers: PerLoop[Batcher[T, R]] = PerLoop(
            functools.partial(Batcher, fn, **options), spare=Batcher(fn, **options)
        )
        functools.update_wrapper(self, fn)

    async def __call__(self, item: T) -> R:
        return await self._batchers.get().submit(item)

    @property
    def batcher(self) -> Batcher[T, R]:
        """The ``Batcher`` of the running event loop (outside a loop: the last one used).

        Example::

            await embed.batcher.close()
        """
        return self._batchers.current()


class SyncBatched(Generic[T, R]):
    """A blocking, thread-safe function of ONE item, batched underneath (``@batched`` on
    a plain ``def``).

    ``f(item)`` blocks the calling thread until the item's batch ran; any number of
    threads may call it. ``f.batcher`` is the ``SyncBatcher`` underneath; after
    ``f.batcher.close()``, ``f(...)`` raises ``BatcherClosed``.

    Example::

        @batched(max_size=100, max_wait=0.01)
        def fetch_rows(ids: list[int]) -> list[Row]: ...

        row = fetch_rows(42)  # from any thread
        fetch_rows.batcher.close()
    """

    def __init__(self, fn: Callable[[list[T]], Any], options: dict[str, Any]) -> None:
        self._batcher: SyncBatcher[T, R] = SyncBatcher(fn, **options)
        functools.update_wrapper(self, fn)

    def __call__(self, item: T) -> R:
        return self._batcher.submit(item)

    @property
    def batcher(self) -> SyncBatcher[T, R]:
        """The ``SyncBatcher`` underneath (``stats``, ``flush``, ``close``).

        Example::

            fetch_rows.batcher.close()
        """
        return self._batcher


class _BatchedMethod(Generic[S, T, R]):
    """Shared descriptor logic: one batched callable per instance, cached on the instance."""

    _bound_type: type[AsyncBatched[Any, Any]] | type[SyncBatched[Any, Any]]

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        Batcher(fn, **options)  # fail at decoration time on bad options
        self._fn = fn
        self._options = options
        self._attr = fn.__name__
        functools.update_wrapper(cast(Any, self), fn)

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = name

    def _bind(self, instance: S) -> Any:
        try:
            return instance.__dict__[self._attr]
        except AttributeError:
            raise TypeError(
                f"@batched method {self._fn.__qualname__} needs instances with a __dict__ "
                "(it keeps one batcher per instance there)"
            ) from None
        except KeyError:
            pass
        options = dict(self._options)
        options.setdefault("name", f"{self._fn.__qualname__}@{id(instance):#x}")
        bound = self._bound_type(types.MethodType(self._fn, instance), options)
        # A non-data descriptor: later lookups find this entry first and skip __get__.
        instance.__dict__[self._attr] = bound
        return bound

    @property
    def batcher(self) -> Any:
        raise AttributeError(
            f"{self._fn.__qualname__} has one batcher per instance: use obj.{self._attr}.batcher"
        )


class AsyncBatchedMethod(_BatchedMethod[S, T, R]):
    """``@batched`` on an ``async def`` method: ``await obj.m(item)``, one batcher per
    instance, reachable as ``obj.m.batcher``.

    Example::

        class Embedder:
            @batched(max_size=32)
            async def embed(self, texts: list[str]) -> list[Vector]: ...

        vector = await Embedder().embed("hello")
    """

    _bound_type = AsyncBatched

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> AsyncBatchedMethod[S, T, R]: ...
    @overload
    def __get__(self, instance: S, owner: type[Any]) -> AsyncBatched[T, R]: ...
    def __get__(
        self, instance: S | None, owner: type[Any]
    ) -> AsyncBatched[T, R] | AsyncBatchedMethod[S, T, R]:
        if instance is None:
            return self
        bound: AsyncBatched[T, R] = self._bind(instance)
        return bound


class SyncBatchedMethod(_BatchedMethod[S, T, R]):
    """``@batched`` on a plain ``def`` method: ``obj.m(item)`` blocks, one ``SyncBatcher``
    per instance, reachable as ``obj.m.batcher``.

    Example::

        class Repo:
            @batched(max_size=100)
            def get(self, ids: list[int]) -> list[Row]: ...

        row = Repo().get(7)
    """

    _bound_type = SyncBatched

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> SyncBatchedMethod[S, T, R]: ...
    @overload
    def __get__(self, instance: S, owner: type[Any]) -> SyncBatched[T, R]: ...
    def __get__(
        self, instance: S | None, owner: type[Any]
    ) -> SyncBatched[T, R] | SyncBatchedMethod[S, T, R]:
        if instance is None:
            return self
        bound: SyncBatched[T, R] = self._bind(instance)
        return bound


class _Decorator:
    """What ``batched(...)`` returns: apply it to the batch function."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options

    @overload
    def __call__(self, fn: AsyncBatchFn[T, R]) -> AsyncBatched[T, R]: ...
    @overload
    def __call__(self, fn: AsyncBatchMethod[S, T, R]) -> AsyncBatchedMethod[S, T, R]: ...
    @overload
    def __call__(self, fn: SyncBatchFn[T, R]) -> SyncBatched[T, R]: ...
    @overload
    def __call__(self, fn: SyncBatchMethod[S, T, R]) -> SyncBatchedMethod[S, T, R]: ...
    def __call__(self, fn: Callable[..., Any]) -> Any:
        return _decorate(fn, self._options)


def _decorate(fn: Callable[..., Any], options: dict[str, Any]) -> Any:
    options = {"name": getattr(fn, "__qualname__", None), **options}
    is_async = inspect.iscoroutinefunction(fn)
    if _takes_self(fn):
        return (AsyncBatchedMethod if is_async else SyncBatchedMethod)(fn, options)
    return (AsyncBatched if is_async else SyncBatched)(fn, options)


def _takes_self(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` needs two positional arguments (``self`` and the batch)."""
    required = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 2


@overload
def batched(fn: AsyncBatchFn[T, R], /) -> AsyncBatched[T, R]: ...
@overload
def batched(fn: AsyncBatchMethod[S, T, R], /) -> AsyncBatchedMethod[S, T, R]: ...
@overload
def batched(fn: SyncBatchFn[T, R], /) -> SyncBatched[T, R]: ...
@overload
def batched(fn: SyncBatchMethod[S, T, R], /) -> SyncBatchedMethod[S, T, R]: ...
@overload
def batched(
    *,
    max_size: int = ...,
    max_wait: float = ...,
    min_size: int | None = ...,
    max_concurrency: int = ...,
    timeout: float | None = ...,
    retry: Any = ...,
    max_pending: int | None = ...,
    keys: Any = ...,
    id_of: Callable[[Any], Any] | None = ...,
    on_batch: Callable[[Any], object] | None = ...,
    on_result: Callable[[Any, Any], object] | None = ...,
    executor: Any = ...,
    name: str | None = ...,
) -> _Decorator: ...
def batched(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Decorate a function of a whole batch so that callers pass ONE item each.

    Takes ``Batcher``'s options (``max_size``, ``max_wait``, ``min_size``,
    ``max_concurrency``, ``timeout``, ``retry``, ``max_pending``, ``keys``, ``id_of``,
    ``on_batch``, ``on_result``, ``executor``, ``name``); bare ``@batched`` uses the
    defaults. What you get depends on what you decorate:

    * ``async def f(items)`` -> ``await f(item)``; one ``Batcher`` per running event loop;
    * ``def f(items)`` -> ``f(item)`` blocks and is thread-safe (a ``SyncBatcher``);
    * a method ``(self, items)``, async or not -> the same, with one batcher per instance.

    The batcher is ``f.batcher`` (``obj.method.batcher`` for methods): read its ``stats``,
    ``flush`` or ``close`` it; after closing, calling ``f`` raises ``BatcherClosed``.
    Options are checked at decoration time (``ValueError`` naming the option).

    Example::

        @batched(max_size=64, max_wait=0.002)
        async def embed(texts: list[str]) -> list[list[float]]:
            return await model.encode(texts)

        vector = await embed("hello")
    """
    if fn is not None:
        return _decorate(fn, options)
    return _Decorator(options)
