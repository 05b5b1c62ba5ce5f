"""Argument parsing and dispatch for the ``batchwork`` console script."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The ``batchwork`` argument parser, one sub-command per action."""
    parser = argparse.ArgumentParser(prog="batchwork", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="show batching, task runs and jobs working together")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Example::

        main(["demo"])
    """
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo()
    return 2
