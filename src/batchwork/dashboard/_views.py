"""Small pieces the dashboard's pages and API share: responses, parsing, shaping data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse

from batchwork.cli._render import span, to_jsonable

if TYPE_CHECKING:
    from batchwork.jobs import Job, JobProcessor

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Refused(Exception):
    """A request the dashboard will not serve; ``status`` and ``message`` say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def security_headers() -> dict[str, str]:
    """Headers on every response: a strict CSP, no sniffing, no framing, no caching."""
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def json_response(value: Any, status: int = 200) -> JSONResponse:
    """``value`` as JSON (records via :func:`to_jsonable`) with the security headers."""
    return JSONResponse(to_jsonable(value), status_code=status, headers=security_headers())


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form; ``Refused`` (415) for any other body."""
    # The dashboard's forms are urlencoded; parsing them here spares the extra a
    # multipart dependency it would never use.
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media != "application/x-www-form-urlencoded":
        raise Refused(415, "forms must be application/x-www-form-urlencoded")
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def query_int(text: str | None, default: int, low: int, high: int) -> int:
    """A query parameter as an int clamped to ``[low, high]``; ``Refused`` (400) if not one."""
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise Refused(400, f"expected an integer, got {text!r}") from None
    return max(low, min(high, value))


def pretty(value: Any) -> str:
    """A payload or result as indented JSON text (the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


class Counts(Protocol):
    """What the pages read from ``processor.stats()``."""

    @property
    def by_status(self) -> Mapping[str, int]: ...
    @property
    def by_name(self) -> Mapping[str, Mapping[str, int]]: ...


def by_status(stats: Counts) -> dict[str, int]:
    """Counts per status, as plain strings and ints."""
    return {str(k): int(v) for k, v in stats.by_status.items()}


def by_name(stats: Counts) -> dict[str, dict[str, int]]:
    """Counts per name, then per status."""
    return {str(n): {str(s): int(c) for s, c in row.items()} for n, row in stats.by_name.items()}


def job_names(processor: JobProcessor) -> set[str]:
    """The job names the processor registers (empty for a bare store URL)."""
    return set(processor.jobs)


def job_events(job: Job) -> list[tuple[str, datetime, str]]:
    """The moments of a job's life, oldest first, for the detail page's timeline."""
    events: list[tuple[str, datetime, str]] = [("created", job.created_at, "")]
    if job.scheduled_for != job.created_at:
        events.append(("due", job.scheduled_for, ""))
    if job.started_at is not None:
        events.append(("first started", job.started_at, f"attempt 1 of {job.attempts}"))
    if job.ended_at is not None:
        events.append((str(job.status), job.ended_at, span(job.duration)))
    elif job.updated_at not in {e[1] for e in events}:
        events.append((f"now {job.status}", job.updated_at, f"{job.attempts} attempt(s)"))
    return sorted(events, key=lambda e: e[1])
