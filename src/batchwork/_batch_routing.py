"""Turn what a batch function returned into one outcome per item (pure)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from .errors import BatchResultError

_MISSING: Any = object()


def route_results(
    raw: object,
    items: Sequence[Any],
    id_of: Callable[[Any], Hashable] | None,
) -> tuple[Sequence[Any], int]:
    """One outcome per item, in item order, and the number of unknown ids.

    A sequence answers by position and must hold exactly one entry per item; with
    ``id_of``, a mapping answers by id (an item without a result gets its own
    `BatchResultError`, results for ids no item has are counted and ignored). Anything
    else raises `BatchResultError` for the whole batch.

    Example::

        route_results({2: "b", 1: "a"}, [1, 2], id_of=lambda x: x)  # (["a", "b"], 0)
    """
    size = len(items)
    if id_of is not None and isinstance(raw, Mapping):
        return _by_id(raw, items, id_of)
    if type(raw) is list or type(raw) is tuple:
        outcomes: Sequence[Any] = raw
    elif isinstance(raw, (str, bytes, bytearray, Mapping)) or not _sized_iterable(raw):
        wanted = "a sequence (or a mapping by id)" if id_of is not None else "a sequence"
        raise BatchResultError(
            f"batch function returned {type(raw).__name__}, expected {wanted} of "
            f"{size} results (got: not a sequence)",
            expected=size,
            got=None,
        )
    else:
        outcomes = list(raw)  # type: ignore[call-overload]
    if len(outcomes) != size:
        raise BatchResultError(
            f"batch function returned {len(outcomes)} results for {size} items "
            f"(expected {size}, got {len(outcomes)})",
            expected=size,
            got=len(outcomes),
        )
    return outcomes, 0


def _sized_iterable(value: object) -> bool:
    # Arrays and tensors are not registered as Sequence but answer len() and iteration.
    return hasattr(value, "__len__") and hasattr(value, "__iter__")


def _by_id(
    raw: Mapping[Any, Any],
    items: Sequence[Any],
    id_of: Callable[[Any], Hashable],
) -> tuple[list[Any], int]:
    outcomes: list[Any] = []
    ids: set[Any] = set()
    missing: list[tuple[int, Any]] = []
    for position, item in enumerate(items):
        try:
            ident = id_of(item)
            ids.add(ident)
            outcome = raw.get(ident, _MISSING)
        except Exception as exc:  # a bad id fails only its own item
            outcomes.append(exc)
            continue
        if outcome is _MISSING:
            missing.append((position, ident))
        outcomes.append(outcome)
    size = len(items)
    answered = size - len(missing)
    for position, ident in missing:
        outcomes[position] = BatchResultError(
            f"batch function returned no result for id {ident!r} "
            f"(expected {size} results, got {answered})",
            expected=size,
            got=answered,
        )
    unknown = sum(1 for ident in raw if ident not in ids)
    return outcomes, unknown
