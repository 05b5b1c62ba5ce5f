"""Fixtures shared by every test directory."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _event_loop_for_sync_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    # looptime's pytest hook asks the policy for an event loop even in a sync test, and the
    # policy then creates one that nobody closes: its ResourceWarning (an error here) would
    # surface later, in whatever test the garbage collector happens to run. Give sync tests
    # a loop that is closed when they end.
    if inspect.iscoroutinefunction(getattr(request.node, "obj", None)):
        yield
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()
