"""Turning the command line's words into library values: APP, JSON, instants, durations.

Every function here raises :class:`UsageError` with one line that says what was wrong and
with which value; ``main`` prints it and exits with status 2.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchwork.jobs import JobProcessor


class UsageError(Exception):
    """A command-line value that cannot be used; the message is the one line shown."""


def load_app(spec: str) -> JobProcessor:
    """The :class:`~batchwork.jobs.JobProcessor` named by ``module:attribute``.

    The current directory is importable (as with ``python -m``). A store URL
    (``sqlite:///jobs.db``, ``postgresql://…``) is accepted too and gives a processor with
    no registered jobs, enough to inspect and control a store.

    Example::

        processor = load_app("myapp.jobs:processor")
    """
    from batchwork.jobs import JobProcessor

    if "://" in spec:
        try:
            return JobProcessor(spec)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"APP must be module:attribute (e.g. myapp.jobs:processor), got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module = _import(module_name, spec)
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise UsageError(
                f"{module_name!r} has no attribute {attribute!r} (APP {spec!r})"
            ) from None
    if not isinstance(value, JobProcessor):
        kind = type(value).__name__
        raise UsageError(f"APP {spec!r} is a {kind}, not a batchwork.jobs.JobProcessor")
    return value


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"cannot import {module_name!r} for APP {spec!r}: {exc}") from exc
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise UsageError(f"importing {module_name!r} for APP {spec!r} failed: {detail}") from exc


def parse_payload(text: str | None) -> Any:
    """A job payload from its JSON text (``None`` when not given).

    Example::

        parse_payload('{"path": "a.csv"}')   # {'path': 'a.csv'}
    """
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"payload is not valid JSON ({exc}): {text!r}") from exc


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """A duration: seconds, or a number with ``s``, ``m``, ``h``, ``d`` or ``w``.

    Example::

        parse_duration("7d")     # timedelta(days=7)
        parse_duration("90")     # timedelta(seconds=90)
    """
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"duration must look like 90s, 15m, 12h, 7d or 2w, got {text!r}")
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


def parse_instant(text: str, *, now: datetime) -> datetime:
    """An instant: ISO 8601 (a time without offset is UTC) or ``+duration`` from ``now``.

    Example::

        parse_instant("+10m", now=now)                 # now + 10 minutes
        parse_instant("2026-12-01T08:00:00+01:00", now=now)
    """
    if text.startswith("+"):
        return now + parse_duration(text[1:])
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(
            f"time must be ISO 8601 (2026-12-01T08:00:00Z) or +duration, got {text!r}"
        ) from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_job_id(text: str) -> int:
    """A job id (a positive integer)."""
    if not text.isdigit():
        raise UsageError(f"job ID must be a positive integer, got {text!r}")
    return int(text)


def parse_tags(text: str | None) -> list[str] | None:
    """``t1,t2`` as a list of tags; ``None`` (take every job) when not given."""
    if text is None:
        return None
    tags = [t.strip() for t in text.split(",") if t.strip()]
    if not tags:
        raise UsageError(f"--tags needs at least one tag, got {text!r}")
    return tags
