"""Fixtures for the jobs tests: one store per backend.

``store_url`` runs a test on SQLite (a fresh file) and, when ``BATCHWORK_TEST_POSTGRES_DSN``
is set (``make test`` and CI set it), on PostgreSQL in a fresh schema dropped afterwards.
Select one backend with ``-k sqlite`` or ``-k postgres``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from batchwork.jobs._sqlite import SQLiteStore
from batchwork.jobs._store import Store, store_from_url

from ..backends import POSTGRES_DSN, drop_postgres_schema
from .clock import ManualClock


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store on ``store_url``, closed after the test."""
    opened = store_from_url(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock starting at the current second (close to a database's own clock)."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name on the test PostgreSQL server, dropped after the test."""
    name = f"bw_{uuid4().hex[:12]}"
    try:
        yield name
    finally:
        drop_postgres_schema(POSTGRES_DSN, name)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store on a fresh file, closed after the test."""
    opened = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
