"""Per-key batching options (`KeyConfig`), their validation and resolution."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from ._retry import Retry

T = TypeVar("T")
R = TypeVar("R")

BatchResult: TypeAlias = Sequence[R | BaseException] | Mapping[Any, R | BaseException]
"""What a batch function returns: one entry per item, or a mapping by ``id_of``."""

BatchFn: TypeAlias = (
    Callable[[list[T]], Awaitable[BatchResult[R]]] | Callable[[list[T]], BatchResult[R]]
)
"""An ``async def fn(items)`` or a plain ``def fn(items)`` (run in an executor)."""


class Inherit(enum.Enum):
    """Marker for a `KeyConfig` option left to the `Batcher`'s default."""

    INHERIT = "inherit"

    def __repr__(self) -> str:
        return "INHERIT"


INHERIT = Inherit.INHERIT


@dataclass(frozen=True, slots=True)
class KeyConfig(Generic[T, R]):
    """Options for one key of a `Batcher`; anything left out uses the Batcher's value.

    ``None`` is a real value for ``min_size``, ``timeout``, ``retry`` and ``id_of`` (turn
    it off for this key), so "use the default" is spelled by leaving the option out.

    Example::

        Batcher(write, keys={"audit": KeyConfig(fn=write_audit, max_size=10, timeout=None)})
    """

    fn: BatchFn[T, R] | None = None
    max_size: int | None = None
    max_wait: float | None = None
    min_size: int | Inherit | None = INHERIT
    max_concurrency: int | None = None
    timeout: float | Inherit | None = INHERIT
    retry: Retry | Inherit | None = INHERIT
    id_of: Callable[[T], Hashable] | Inherit | None = INHERIT


@dataclass(frozen=True, slots=True)
class Settings(Generic[T, R]):
    """The resolved, validated options of one key (internal)."""

    fn: BatchFn[T, R]
    is_async: bool
    max_size: int
    max_wait: float
    min_size: int | None
    max_concurrency: int
    timeout: float | None
    retry: Retry | None
    id_of: Callable[[T], Hashable] | None

    @property
    def threshold(self) -> int:
        """The pending count that flushes at once."""
        return self.min_size if self.min_size is not None else self.max_size

    def merged(self, override: KeyConfig[T, R], where: str) -> Settings[T, R]:
        """These settings with ``override``'s given options applied, validated."""
        fn = override.fn if override.fn is not None else self.fn
        return build_settings(
            fn,
            max_size=_pick(override.max_size, self.max_size),
            max_wait=_pick(override.max_wait, self.max_wait),
            min_size=self.min_size if override.min_size is INHERIT else override.min_size,
            max_concurrency=_pick(override.max_concurrency, self.max_concurrency),
            timeout=self.timeout if override.timeout is INHERIT else override.timeout,
            retry=self.retry if override.retry is INHERIT else override.retry,
            id_of=self.id_of if override.id_of is INHERIT else override.id_of,
            where=where,
        )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` gives a coroutine (functions, partials, async ``__call__``)."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - we want the dunder itself
    return call is not None and inspect.iscoroutinefunction(call)


def build_settings(
    fn: BatchFn[T, R],
    *,
    max_size: int,
    max_wait: float,
    min_size: int | None,
    max_concurrency: int,
    timeout: float | None,
    retry: Retry | None,
    id_of: Callable[[T], Hashable] | None,
    where: str = "",
) -> Settings[T, R]:
    """Validate options and resolve them; ``ValueError`` names the bad option."""
    if not callable(fn):
        raise TypeError(f"{where}fn must be callable, got {fn!r}")
    _check_int(f"{where}max_size", max_size, 1)
    _check_int(f"{where}max_concurrency", max_concurrency, 1)
    if not max_wait >= 0:  # also refuses NaN
        raise ValueError(f"{where}max_wait must be >= 0 seconds, got {max_wait!r}")
    if min_size is not None:
        _check_int(f"{where}min_size", min_size, 1)
        if min_size > max_size:
            raise ValueError(f"{where}min_size must be <= max_size ({max_size}), got {min_size}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"{where}timeout must be > 0 seconds, got {timeout!r}")
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"{where}retry must be a Retry or None, got {retry!r}")
    return Settings(
        fn=fn,
        is_async=is_async_callable(fn),
        max_size=max_size,
        max_wait=float(max_wait),
        min_size=min_size,
        max_concurrency=max_concurrency,
        timeout=timeout,
        retry=retry,
        id_of=id_of,
    )


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
