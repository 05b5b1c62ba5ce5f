"""The store backends every suite runs on: SQLite always, PostgreSQL when configured.

``BATCHWORK_TEST_POSTGRES_DSN`` names the PostgreSQL server (``make test`` and CI set it);
each test then gets a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import os

POSTGRES_DSN_VARIABLE = "BATCHWORK_TEST_POSTGRES_DSN"
# PostgreSQL-only tests run in CI and never skip: without the variable, the loopback server.
POSTGRES_DSN = os.environ.get(POSTGRES_DSN_VARIABLE) or "postgresql://postgres@127.0.0.1:5432/test"


def backends() -> list[str]:
    """``["sqlite"]``, plus ``"postgres"`` when its DSN is configured."""
    return ["sqlite", "postgres"] if os.environ.get(POSTGRES_DSN_VARIABLE) else ["sqlite"]


def postgres_url(dsn: str, schema: str) -> str:
    """The DSN with ``schema=`` added to its query string."""
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}schema={schema}"


def drop_postgres_schema(dsn: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
