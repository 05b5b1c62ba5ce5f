"""Pure formatting shared by the command line and the dashboard: JSON shapes and tables.

Nothing here does I/O: values in, ``dict``/``str``/``rich`` renderables out, so the tests
check formatting without a terminal and the dashboard's JSON API matches ``--json``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from batchwork.jobs import Job

STATUS_STYLES = {
    "pending": "cyan",
    "running": "bold blue",
    "paused": "magenta",
    "finished": "green",
    "errored": "bold red",
    "cancelled": "yellow",
    "timed_out": "red",
    "crashed": "bold red",
    "skipped": "dim",
    "missed": "dim yellow",
}


def to_jsonable(value: Any) -> Any:
    """Records as plain JSON values: dataclasses as objects, instants as ISO 8601 strings.

    Example::

        json.dumps(to_jsonable(job))
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(_key(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def _key(key: Any) -> Any:
    if isinstance(key, tuple):
        return "/".join(str(to_jsonable(k)) for k in key)
    return to_jsonable(key)


def dumps(value: Any) -> str:
    """``value`` as indented JSON text (see :func:`to_jsonable`)."""
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def when(value: datetime | None, *, now: datetime | None = None) -> str:
    """An instant for people: ``2026-11-22 21:09:21`` (UTC), or ``-`` when absent."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None, *, now: datetime) -> str:
    """How long before ``now``: ``4s ago``, ``3m ago``, ``in 2h`` for the future."""
    if value is None:
        return "-"
    seconds = (now - value).total_seconds()
    text = span(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def span(seconds: float | None) -> str:
    """A duration for people: ``0.25s``, ``12s``, ``3m 05s``, ``2h 10m``, ``3d 4h``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def first_line(text: str | None, width: int = 60) -> str:
    """The first line of an error, shortened to ``width`` characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def status_text(status: str) -> RenderableType:
    """A status word in its colour."""
    from rich.text import Text

    return Text(str(status), style=STATUS_STYLES.get(str(status), ""))


def _table(*columns: str, title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for column in columns:
        numeric = column in {"ID", "ATTEMPTS", "PRIORITY", "COUNT", "PID", "RUNNING"}
        table.add_column(column, justify="right" if numeric else "left", no_wrap=column != "ERROR")
    return table


def jobs_table(jobs: Iterable[Job], *, now: datetime) -> Table:
    """One row per job: id, name, status, attempts, times, worker and the error's first line."""
    table = _table(
        "ID", "NAME", "STATUS", "ATTEMPTS", "TAG", "SCHEDULED", "DURATION", "WORKER", "ERROR"
    )
    for job in jobs:
        table.add_row(
            str(job.id),
            job.name,
            status_text(job.status),
            str(job.attempts),
            job.tag or "",
            ago(job.scheduled_for, now=now),
            span(job.duration),
            job.worker_id or "",
            first_line(job.error, 50),
        )
    return table


def job_fields(job: Job, *, now: datetime) -> list[tuple[str, str]]:
    """The scalar fields of one job as ``(label, text)`` pairs, in reading order."""
    return [
        ("id", str(job.id)),
        ("name", job.name),
        ("type", str(job.type)),
        ("status", str(job.status)),
        ("attempts", str(job.attempts)),
        ("tag", job.tag or "-"),
        ("priority", str(job.priority)),
        ("worker", job.worker_id or "-"),
        ("conflict with", str(job.conflict_id) if job.conflict_id is not None else "-"),
        ("scheduled for", f"{when(job.scheduled_for)} ({ago(job.scheduled_for, now=now)})"),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("ended", when(job.ended_at)),
        ("duration", span(job.duration)),
    ]


def job_detail(job: Job, *, now: datetime) -> list[RenderableType]:
    """Everything about one job: fields, payload, result and the full error."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    fields = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    fields.add_column(style="bold")
    fields.add_column()
    for label, text in job_fields(job, now=now):
        fields.add_row(label, status_text(text) if label == "status" else text)
    parts: list[RenderableType] = [fields, Text("payload", style="bold"), _json_text(job.payload)]
    if job.result is not None:
        parts += [Text("result", style="bold"), _json_text(job.result)]
    if job.error:
        parts += [Text("error", style="bold red"), Text(job.error)]
    return parts


def _json_text(value: Any) -> RenderableType:
    from rich.text import Text

    return Text(json.dumps(value, indent=2, ensure_ascii=False))


def counts_table(counts: Mapping[str, int], *, title: str, key: str) -> Table:
    """A two-column table of counts (per status, or per name)."""
    table = _table(key, "COUNT", title=title)
    for label, count in counts.items():
        shown = status_text(label) if key == "STATUS" else label
        table.add_row(shown, str(count))
    return table


def names_table(by_name: Mapping[str, Mapping[str, int]]) -> Table:
    """Jobs per name (rows) and status (columns); statuses no job has are left out."""
    present = {status for row in by_name.values() for status in row}
    statuses = [s for s in STATUS_STYLES if s in present]
    table = _table("NAME", *[s.upper() for s in statuses], "TOTAL", title="jobs by name")
    for column in table.columns[1:]:
        column.justify = "right"
    for name in sorted(by_name):
        row = by_name[name]
        cells = [str(row.get(s, 0)) if row.get(s) else "." for s in statuses]
        table.add_row(name, *cells, str(sum(row.values())))
    return table


def plain_table(rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> Table:
    """A table of already formatted cells, one mapping per row."""
    cols = list(columns)
    table = _table(*[c.upper() for c in cols])
    for row in rows:
        cells: list[RenderableType] = []
        for c in cols:
            value = row.get(c, "")
            cells.append(status_text(value) if c == "status" else str(value))
        table.add_row(*cells)
    return table
