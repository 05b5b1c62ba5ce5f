"""The Batcher's public surface: exports, typing, standard-library-only imports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import assert_type

import pytest

import batchwork
from batchwork import Batcher, BatcherStats, BatchInfo, KeyConfig, Retry

pytestmark = pytest.mark.looptime


async def test_item_and_result_types_are_inferred_from_fn() -> None:
    async def to_text(items: list[int]) -> list[str]:
        return [str(item) for item in items]

    def by_id(items: list[int]) -> dict[int, str | BaseException]:
        return {item: str(item) for item in items}

    batcher = Batcher(to_text, max_wait=0, keys={"k": KeyConfig(max_size=3)})
    assert_type(batcher, Batcher[int, str])
    assert assert_type(await batcher.submit(1), str) == "1"
    assert assert_type(await batcher.submit_many([2, 3], key="k"), list[str]) == ["2", "3"]
    mapped = Batcher(by_id, max_wait=0, id_of=lambda item: item)
    assert_type(mapped, Batcher[int, str])
    assert await mapped.submit(4) == "4"
    assert_type(batcher.stats, BatcherStats)
    await batcher.close()
    await mapped.close()


async def test_all_callers_leaving_during_a_retry_backoff_stops_the_retries() -> None:
    calls: list[float] = []

    async def failing(items: list[int]) -> list[int]:
        calls.append(asyncio.get_running_loop().time())
        raise ConnectionError("down")

    infos: list[BatchInfo] = []
    retry = Retry(attempts=5, backoff=10.0, jitter=False)
    batcher = Batcher(failing, max_wait=0, retry=retry, on_batch=infos.append)
    caller = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(1)
    caller.cancel()
    await batcher.close()
    assert calls == [0.0]
    assert infos[0].cancelled
    assert infos[0].attempts == 1


def test_repr_names_the_batcher() -> None:
    async def write(items: list[int]) -> list[int]:
        return items

    assert "write" in repr(Batcher(write))
    assert "events" in repr(Batcher(write, name="events"))


def test_batching_names_are_exported() -> None:
    for name in ("Batcher", "BatchInfo", "BatcherStats", "KeyConfig", "Retry"):
        assert name in batchwork.__all__
        assert getattr(batchwork, name).__module__.startswith("batchwork.")
    assert batchwork.__all__ == sorted(batchwork.__all__)


def test_the_batching_core_imports_only_the_standard_library() -> None:
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import batchwork._batcher\n"
        "roots = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(sorted(roots - set(sys.stdlib_module_names) - {'batchwork'}))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"
