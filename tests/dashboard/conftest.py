"""Fixtures for the dashboard: a real store with a few jobs, and HTTP clients.

The API tests run on SQLite, and on PostgreSQL too when ``BATCHWORK_TEST_POSTGRES_DSN``
is set (``make test`` and CI set it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from batchwork.dashboard import create_app
from batchwork.jobs import JobProcessor
from tests.cli.app_basic import make_processor

BASE = "http://127.0.0.1"


@dataclass
class Seeded:
    """Ids of the jobs the ``seeded`` fixture stored, by what they show."""

    finished: int
    errored: int
    pending: int
    script: int


SCRIPT_PAYLOAD = {
    "note": "<script>window.__pwned = 1</script>",
    "img": '<img src=x onerror="window.__pwned = 2">',
}


async def seed(processor: JobProcessor) -> Seeded:
    """Store one finished, one errored (with a traceback), one pending and one hostile job."""
    finished = await processor.run("add", {"a": 2, "b": 3})
    errored = await processor.run("fail", "abc")
    pending = await processor.enqueue("slow", {"ticks": 3})
    script = await processor.enqueue("add", SCRIPT_PAYLOAD, run_at=None, priority=1)
    return Seeded(finished.id, errored.id, pending, script)


@pytest.fixture
def db_url(store_url: str) -> str:
    """An empty store of each backend (``store_url`` from the shared conftest)."""
    return store_url


@pytest.fixture
async def processor(db_url: str) -> AsyncIterator[JobProcessor]:
    p = make_processor(db_url)
    yield p
    await p.close()


@pytest.fixture
async def seeded(processor: JobProcessor) -> Seeded:
    return await seed(processor)


def client_for(
    processor: JobProcessor,
    *,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
    base_url: str = BASE,
) -> httpx.AsyncClient:
    app = create_app(processor, token=token, allowed_hosts=allowed_hosts)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def client(processor: JobProcessor) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(processor) as c:
        yield c
