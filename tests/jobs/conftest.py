"""Fixtures for the jobs tests: one store per backend.

``store_url`` runs a test on SQLite (a fresh file) and, when ``BATCHWORK_TEST_POSTGRES_DSN``
is set (``make test`` and CI set it), on PostgreSQL in a fresh schema dropped afterwards.
Select one backend with ``-k sqlite`` or ``-k postgres``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from batchwork.jobs._store import Store, store_from_url

from .clock import ManualClock

POSTGRES_DSN_VARIABLE = "BATCHWORK_TEST_POSTGRES_DSN"


def _backends() -> list[str]:
    backends = ["sqlite"]
    if os.environ.get(POSTGRES_DSN_VARIABLE):
        backends.append("postgres")
    return backends


def postgres_url(dsn: str, schema: str) -> str:
    """The DSN with ``schema=`` added to its query string."""
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}schema={schema}"


def drop_postgres_schema(dsn: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=_backends())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty store of each backend (the test id names the backend)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    dsn = os.environ[POSTGRES_DSN_VARIABLE]
    schema = f"bw_{uuid4().hex[:12]}"
    try:
        yield postgres_url(dsn, schema)
    finally:
        drop_postgres_schema(dsn, schema)


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
