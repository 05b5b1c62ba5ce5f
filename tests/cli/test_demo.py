"""``batchwork demo`` runs to completion off a terminal, with plain output."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from pathlib import Path

import pytest

from batchwork.cli.demo import make_processor

from .conftest import Cli

pytestmark = pytest.mark.slow


def test_demo_runs_non_interactively_with_plain_output(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    done = cli("demo", "--db", str(db), "--seconds", "1", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "\x1b[" not in out  # no colours or cursor movement when piped
    for step in ("[1/3] ingestion", "[2/3] durable jobs", "[3/3] summary"):
        assert step in out
    assert "legacy-ftp failed and fell back" in out
    assert "SIGKILL worker pid" in out
    assert "recovered" in out
    assert "batchwork demo: summary" in out
    assert f"BATCHWORK_DEMO_DB={db} batchwork dashboard batchwork.cli.demo:processor" in out
    with sqlite3.connect(db) as conn:
        records = conn.execute("SELECT count(*) FROM demo_records").fetchone()[0]
    assert records > 1000
    assert f"{records:,}" in out
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # keep the test thread loop-free
        by_name = pool.submit(asyncio.run, _counts(db)).result(timeout=60)
    assert by_name["send_report"] == {"finished": 2, "errored": 1}  # flaky, after a retry
    assert set(by_name["index_source"]) == {"finished"}
    assert by_name["refresh_stats"].get("finished", 0) >= 3


async def _counts(db: Path) -> dict[str, dict[str, int]]:
    processor = make_processor(db)
    try:
        stats = await processor.stats()
        return {name: dict(row) for name, row in stats.by_name.items()}
    finally:
        await processor.close()


def test_demo_never_deletes_a_database_that_is_not_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchwork.cli import main

    precious = tmp_path / "jobs.db"
    with sqlite3.connect(precious) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    assert main(["demo", "--db", str(precious)]) == 2
    assert "is not a batchwork demo database" in capsys.readouterr().err
    with sqlite3.connect(precious) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (0,)
