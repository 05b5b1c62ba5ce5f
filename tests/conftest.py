"""Fixtures shared by every test directory."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from .backends import POSTGRES_DSN_VARIABLE, backends, drop_postgres_schema, postgres_url


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


@pytest.fixture(params=backends())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty store of each backend (the test id names the backend)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    dsn = os.environ[POSTGRES_DSN_VARIABLE]
    schema = f"bw_{uuid4().hex[:12]}"
    try:
        yield postgres_url(dsn, schema)
    finally:
        drop_postgres_schema(dsn, schema)
