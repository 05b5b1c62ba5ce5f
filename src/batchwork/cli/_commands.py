"""One small function per sub-command, each a call of the processor's query/admin API.

Each command takes the parsed ``argparse`` namespace and returns the exit status. Output
goes through one ``rich`` console: aligned tables on a terminal, the same tables without
colour when piped, and JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from . import _render as render
from ._app import (
    UsageError,
    load_app,
    parse_duration,
    parse_instant,
    parse_job_id,
    parse_payload,
    parse_tags,
)

if TYPE_CHECKING:
    from rich.console import Console

    from batchwork.jobs import JobProcessor
    from batchwork.jobs._cron_scheduler import CronInfo

T = TypeVar("T")


def console() -> Console:
    """The console every command prints to; job data is never read as rich markup."""
    from rich.console import Console

    # Piped output keeps whole cells (scripts grep them); a terminal gets its own width.
    out = Console(highlight=False, soft_wrap=False, markup=False)
    if not out.is_terminal:
        out = Console(highlight=False, soft_wrap=False, markup=False, width=max(out.width, 200))
    return out


def run_with(processor: JobProcessor, call: Callable[[], Awaitable[T]]) -> T:
    """Run one async call of ``processor`` on a fresh event loop, then close the processor."""

    async def go() -> T:
        try:
            return await call()
        finally:
            await processor.close()

    return asyncio.run(go())


def _now() -> datetime:
    return datetime.now(UTC)


def _print_all(parts: list[Any]) -> None:
    out = console()
    for part in parts:
        out.print(part)


def _print_json(value: Any) -> None:
    sys.stdout.write(render.dumps(value) + "\n")


def registered_names(processor: JobProcessor) -> set[str] | None:
    """Job names ``processor`` registers (``None`` when it registers none, as for a bare
    store URL: then any name goes, as with ``processor.enqueue``)."""
    return set(processor.jobs) or None


# -- producing ---------------------------------------------------------------------------


def cmd_enqueue(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    _check_name(processor, args.name)
    payload = parse_payload(args.payload)
    run_at = parse_instant(args.run_at, now=_now()) if args.run_at else None

    def call() -> Awaitable[int]:
        return processor.enqueue(args.name, payload, run_at=run_at, priority=args.priority)

    job_id = run_with(processor, call)
    if args.json:
        _print_json({"id": job_id})
    else:
        console().print(f"enqueued {args.name} as job {job_id}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    _check_name(processor, args.name)
    payload = parse_payload(args.payload)
    job = run_with(processor, lambda: processor.run(args.name, payload))
    if args.json:
        _print_json(job)
    else:
        _print_all(render.job_detail(job, now=_now()))
    return 0 if job.status == "finished" else 1


def _check_name(processor: JobProcessor, name: str) -> None:
    names = registered_names(processor)
    if names is not None and name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise UsageError(f"unknown job name {name!r} (this APP registers: {known})")


# -- querying ----------------------------------------------------------------------------


def cmd_jobs(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    status = _status(args.status)
    if args.limit < 1 or args.offset < 0:
        raise UsageError(f"--limit must be >= 1 and --offset >= 0, got {args.limit}, {args.offset}")
    jobs = run_with(
        processor,
        lambda: processor.list(
            status=status, name=args.name, tag=args.tag, limit=args.limit, offset=args.offset
        ),
    )
    if args.json:
        _print_json(jobs)
    elif not jobs:
        console().print("no jobs match")
    else:
        console().print(render.jobs_table(jobs, now=_now()))
    return 0


def _status(text: str | None) -> Any:
    from batchwork.jobs import JobStatus

    if text is None:
        return None
    try:
        return JobStatus(text)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise UsageError(f"unknown status {text!r} (one of: {known})") from None


def cmd_show(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    job_id = parse_job_id(args.id)
    job = run_with(processor, lambda: processor.get(job_id))
    if args.json:
        _print_json(job)
    else:
        _print_all(render.job_detail(job, now=_now()))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    stats = run_with(processor, processor.stats)
    if args.json:
        _print_json(stats)
        return 0
    out = console()
    out.print(render.counts_table(stats.by_status, title="jobs by status", key="STATUS"))
    out.print(render.names_table(stats.by_name))
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    workers = run_with(processor, processor.workers)
    if args.json:
        _print_json(workers)
        return 0
    now = _now()
    rows = [
        {
            "worker": w.id,
            "host": w.hostname,
            "pid": w.pid,
            "tags": ",".join(w.tags) if w.tags is not None else "(all)",
            "concurrency": w.concurrency,
            "heartbeat": render.ago(w.heartbeat_at, now=now),
            "running": len(w.running),
            "started": render.ago(w.started_at, now=now),
        }
        for w in workers
    ]
    cols = ["worker", "host", "pid", "tags", "concurrency", "running", "heartbeat", "started"]
    out = console()
    out.print(render.plain_table(rows, cols) if rows else "no live workers")
    return 0


def cmd_crons(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    crons = run_with(processor, processor.crons)
    if args.json:
        _print_json(crons)
        return 0
    now = _now()
    rows = [
        {
            "name": c.name,
            "expression": c.expression,
            "schedule": c.description,
            "timezone": c.timezone,
            "next": render.ago(c.next_tick, now=now),
            "last": render.ago(c.last_tick, now=now),
            "status": str(c.last_status or "-"),
            "flags": ", ".join(_cron_flags(c)) or "ok",
        }
        for c in crons
    ]
    cols = ["name", "expression", "schedule", "timezone", "next", "last", "status", "flags"]
    console().print(render.plain_table(rows, cols) if rows else "no crons registered")
    return 0


def _cron_flags(cron: CronInfo) -> list[str]:
    flags = ["late"] if cron.late else []
    flags += [f"{cron.missed} missed"] if cron.missed else []
    return flags + (["overran"] if cron.overran else [])


# -- controlling -------------------------------------------------------------------------


def cmd_cancel(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    job_id = parse_job_id(args.id)
    changed = run_with(processor, lambda: processor.cancel(job_id))
    message = (
        f"job {job_id}: cancellation requested" if changed else f"job {job_id} had already ended"
    )
    return _report_change(args, job_id, changed, message)


def cmd_retry(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    job_id = parse_job_id(args.id)
    changed = run_with(processor, lambda: processor.retry(job_id))
    message = f"job {job_id} is pending again" if changed else f"job {job_id} has not ended"
    return _report_change(args, job_id, changed, message)


def _report_change(args: argparse.Namespace, job_id: int, changed: bool, message: str) -> int:
    if args.json:
        _print_json({"id": job_id, "changed": changed})
    else:
        console().print(message)
    return 0 if changed else 1


def cmd_purge(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    older_than = parse_duration(args.older_than)
    count = run_with(processor, lambda: processor.purge(older_than=older_than))
    if args.json:
        _print_json({"purged": count})
    else:
        console().print(f"purged {count} ended job(s) older than {args.older_than}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from batchwork.jobs._store import store_from_url

    try:
        store = store_from_url(args.store_url)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc

    async def go() -> None:
        await store.open()
        await store.close()

    asyncio.run(go())
    console().print(f"schema of {args.store_url} is up to date")
    return 0


# -- long-running ------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    processor = load_app(args.app)
    tags = parse_tags(args.tags)
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.processes < 1:
        raise UsageError(f"--processes must be >= 1, got {args.processes}")
    if args.processes > 1:
        return _supervise(args)
    run_with(processor, lambda: processor.run_worker(concurrency=args.concurrency, tags=tags))
    return 0


def _supervise(args: argparse.Namespace) -> int:
    from batchwork.jobs._supervisor import ChildEvent, Supervisor

    argv = [sys.executable, "-m", "batchwork", "worker", args.app]
    argv += ["--concurrency", str(args.concurrency)]
    if args.tags:
        argv += ["--tags", args.tags]

    def report(event: ChildEvent) -> None:
        detail = "" if event.returncode is None else f" (exit status {event.returncode})"
        print(f"worker {event.slot} pid {event.pid} {event.kind}{detail}", file=sys.stderr)

    return Supervisor(argv, args.processes, on_event=report).run()


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from batchwork.dashboard import serve
    except ImportError as exc:
        raise UsageError(
            f"the dashboard needs its extra ({exc.name or exc} is missing): "
            "pip install 'batchwork[dashboard]'"
        ) from exc
    processor = load_app(args.app)
    return serve(processor, host=args.host, port=args.port, token=args.token)


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(db=args.db, seconds=args.seconds)
