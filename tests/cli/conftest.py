"""Run the real ``batchwork`` console script in subprocesses against a real SQLite file."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("batchwork")
APP = "tests.cli.app_basic:processor"
T = TypeVar("T")


@dataclass
class Cli:
    """The console script bound to one test's database."""

    db: Path
    env: dict[str, str]

    def __call__(
        self, *args: str, timeout: float = 60, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(SCRIPT), *args], timeout, extra_env)

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``python ARGS`` with this test's environment."""
        return self._run([sys.executable, *args], 60, None)

    def _run(
        self, argv: list[str], timeout: float, extra_env: Mapping[str, str] | None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def popen(self, *args: str, **options: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([str(SCRIPT), *args], cwd=ROOT, env=self.env, text=True, **options)

    def query(self, call: Callable[[Any], Any]) -> Any:
        """Ask the store directly, through the library (to check what the CLI did)."""
        from tests.cli.app_basic import make_processor

        async def go() -> Any:
            processor = make_processor(f"sqlite:///{self.db}")
            try:
                return await call(processor)
            finally:
                await processor.close()

        # A private thread keeps asyncio.run from touching the test thread's loop state.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result(timeout=60)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    assert SCRIPT.exists(), f"the console script is not installed at {SCRIPT}"
    db = tmp_path / "jobs.db"
    env = {**os.environ, "BATCHWORK_TEST_DB": str(db), "PYTHONUNBUFFERED": "1"}
    env.pop("COLUMNS", None)
    return Cli(db, env)


def wait_until(condition: Callable[[], T | None], timeout: float = 20.0, every: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(every)
