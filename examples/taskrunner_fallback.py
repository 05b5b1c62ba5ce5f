"""Load three users, greet each one, and fall back when a load fails.

The TypeScript Batcher's ``createBatch`` / ``push`` / ``solver`` / ``start``, in batchwork.
Run it: ``python examples/taskrunner_fallback.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from batchwork import Progress, Skipped, TaskRunner


async def load_user(user_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)  # a real loader would call an API here
    if user_id == 2:
        raise ConnectionError(f"user {user_id}: the upstream timed out")
    return {"id": user_id, "name": f"user-{user_id}"}


async def greet(user: dict[str, Any], greeting: str) -> str:
    # The solver's ``on.success``: the results of ``needs`` arrive as arguments, and the
    # return value is what ``next(value)`` used to set.
    return f"{greeting}, {user['name']}"


def count_users(*users: dict[str, Any]) -> int:
    return len(users)


def guest_greeting(error: BaseException) -> str:
    # The solver's ``on.error``: the value returned here becomes the task's result.
    return f"hello, guest ({error})"


def show_progress(progress: Progress) -> None:
    print(f"progress: {progress.done}/{progress.total} done, {progress.failed} failed")


def show_end(error: BaseExceptionGroup[BaseException] | None, results: list[Any]) -> None:
    print(f"end: {len(results)} results, error: {error!r}")


async def main() -> list[Any]:
    runner = TaskRunner(concurrency=2, on_progress=show_progress, on_end=show_end)
    users = [runner.push(load_user, user_id, name=f"user {user_id}") for user_id in (1, 2, 3)]
    greetings = [
        runner.push(greet, "hello", needs=[user], on_needs_failed=guest_greeting) for user in users
    ]
    # A task that needs every user, and is skipped when one of them failed.
    everyone = runner.push(count_users, needs=users, on_needs_failed="skip")

    results = await runner.start(return_exceptions=True)

    for handle in greetings:
        print(handle.result())
    total = everyone.result()
    print("everyone:", "skipped" if total is Skipped else total)
    print("statuses:", [handle.status for handle in users])
    return results


if __name__ == "__main__":
    asyncio.run(main())
