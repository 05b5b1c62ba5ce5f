"""Argument parsing and dispatch for the ``batchwork`` console script.

Every sub-command is a thin call of the library's query/admin API (``_commands.py``).
Errors the user can fix (a bad APP, an unknown job name, malformed JSON, an unreachable
store) print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from . import _commands as commands
from ._app import UsageError

APP_HELP = "module:attribute naming a JobProcessor (or a store URL such as sqlite:///jobs.db)"


def build_parser() -> argparse.ArgumentParser:
    """The ``batchwork`` argument parser, one sub-command per action.

    Example::

        args = build_parser().parse_args(["jobs", "app:processor", "--status", "errored"])
    """
    parser = argparse.ArgumentParser(
        prog="batchwork",
        description="batchwork: micro-batching, task runs, durable jobs and crons.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, *, app: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        if app:
            p.add_argument("app", metavar="APP", help=APP_HELP)
        return p

    p = command("worker", commands.cmd_worker, "run a worker until SIGINT/SIGTERM")
    p.add_argument("--tags", help="comma-separated tags this worker takes (default: all jobs)")
    p.add_argument("--concurrency", type=int, default=8, help="jobs run at once per process")
    p.add_argument("--processes", type=int, default=1, help="worker processes (supervised)")

    p = command("enqueue", commands.cmd_enqueue, "enqueue a job; prints its id")
    p.add_argument("name", metavar="NAME", help="a job name the APP registers")
    p.add_argument("payload", metavar="JSON", nargs="?", help="the payload as JSON text")
    p.add_argument("--run-at", help="ISO 8601 instant (UTC if no offset) or +duration (+10m)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    _json_flag(p)

    p = command("run", commands.cmd_run, "run a job now in this process (recorded as usual)")
    p.add_argument("name", metavar="NAME", help="a job name the APP registers")
    p.add_argument("payload", metavar="JSON", nargs="?", help="the payload as JSON text")
    _json_flag(p)

    p = command("jobs", commands.cmd_jobs, "list jobs, newest first")
    p.add_argument("--status", help="only jobs with this status")
    p.add_argument("--name", help="only jobs with this name")
    p.add_argument("--tag", help="only jobs with this tag")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--offset", type=int, default=0, help="skip this many newer jobs (paging)")
    _json_flag(p)

    for name, handler, text in (
        ("show", commands.cmd_show, "show one job: fields, payload, result, error"),
        ("cancel", commands.cmd_cancel, "cancel a job (a running one is signalled)"),
        ("retry", commands.cmd_retry, "put an ended job back to pending"),
    ):
        p = command(name, handler, text)
        p.add_argument("id", metavar="ID", help="the job id")
        _json_flag(p)

    for name, handler, text in (
        ("crons", commands.cmd_crons, "list crons: schedule, next and last tick, health"),
        ("workers", commands.cmd_workers, "list live workers"),
        ("stats", commands.cmd_stats, "count jobs per status and per name"),
    ):
        _json_flag(command(name, handler, text))

    p = command("purge", commands.cmd_purge, "delete ended jobs older than a duration")
    p.add_argument("--older-than", required=True, help="e.g. 30d, 12h, 90m")
    _json_flag(p)

    p = command("migrate", commands.cmd_migrate, "create or upgrade a store's schema", app=False)
    p.add_argument("store_url", metavar="STORE_URL", help="sqlite:///path or postgresql://…")

    p = command("dashboard", commands.cmd_dashboard, "serve the web dashboard")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8321, help="port (default 8321)")
    p.add_argument(
        "--token",
        default=os.environ.get("BATCHWORK_DASHBOARD_TOKEN") or None,
        help="require this token for pages, API and actions "
        "(default: $BATCHWORK_DASHBOARD_TOKEN; the variable keeps it out of `ps`)",
    )

    p = command(
        "demo", commands.cmd_demo, "show batching, task runs and jobs working together", app=False
    )
    p.add_argument("--db", help="demo database file (default ./batchwork-demo.db)")
    p.add_argument("--seconds", type=float, default=4.0, help="how long jobs keep arriving")
    return parser


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Example::

        main(["jobs", "myapp:processor", "--status", "errored", "--json"])
    """
    args = build_parser().parse_args(argv)
    if args.command not in LONG_RUNNING:
        _quiet_drivers()
    try:
        status: int = args.handler(args)
    except UsageError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from batchwork.errors import BatchworkError

        if isinstance(exc, BatchworkError):
            return _fail(_one_line(exc))
        if isinstance(exc, OSError):  # e.g. a store path that cannot be created
            return _fail(f"{type(exc).__name__}: {_one_line(exc)}")
        raise
    return status


LONG_RUNNING = {"worker", "dashboard", "demo"}


def _quiet_drivers() -> None:
    # A one-shot command reports a store failure in its own one line; the connection
    # pool's retry warnings would only repeat it over several lines.
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in message:
        message += f" ({type(cause).__name__}: {str(cause).splitlines()[0]})"
    return message


def _fail(message: str) -> int:
    print(f"batchwork: error: {message}", file=sys.stderr)
    return 2
