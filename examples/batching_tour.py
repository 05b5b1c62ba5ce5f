"""A tour of batchwork's micro-batching: Batcher, SyncBatcher, @batched, DataLoader.

Every batch function here prints the batch it gets, so the output shows the batching.
Run it: ``python examples/batching_tour.py`` (about a tenth of a second).
"""

from __future__ import annotations

import asyncio
import threading

from batchwork import Batcher, DataLoader, KeyConfig, SyncBatcher, batched


# 1. Batcher: many callers, one call per batch, each caller gets its own result.
async def write_events(events: list[str]) -> list[int | BaseException]:
    print("  write_events", events)
    # One entry per item, in order; an exception entry fails only that item's caller.
    return [len(e) if e else ValueError("empty event") for e in events]


async def audit(events: list[str]) -> list[int]:
    print("  audit", events)
    return [0 for _ in events]


async def tour_batcher() -> None:
    print("Batcher")
    async with Batcher(
        write_events,
        max_size=3,
        max_wait=0.01,
        keys={"audit": KeyConfig(fn=audit, max_size=10)},
    ) as batcher:
        # Four callers in the same tick: a full batch of 3 at once, the 4th after 10 ms.
        sizes = await asyncio.gather(
            *(batcher.submit(e) for e in ["a", "", "ccc", "dddd"]), return_exceptions=True
        )
        print("  results", sizes)
        print("  submit_many", await batcher.submit_many(["x", "yy"]))
        batcher.put("login", key="audit", callback=lambda item, out: print("  put done", item))
        await batcher.flush()
        print("  stats: items", batcher.stats.items, "batches", batcher.stats.batches)


# 2. SyncBatcher: the same from threads; each call blocks its own thread.
def fetch_rows(ids: list[int]) -> list[str]:
    return [f"row-{i}" for i in ids]


def tour_sync_batcher() -> None:
    print("SyncBatcher")
    results: dict[int, str] = {}
    with SyncBatcher(fetch_rows, max_size=16, max_wait=0.005) as rows:

        def worker(n: int) -> None:
            results[n] = rows.submit(n)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print("  from 8 threads:", [results[n] for n in range(8)])


# 3. @batched: callers pass ONE item; async def, plain def and methods all work.
@batched(max_size=4, max_wait=0.005)
async def embed(texts: list[str]) -> list[int]:
    print("  embed", texts)
    return [len(t) for t in texts]


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    @batched(max_size=10, max_wait=0.005)
    def greet(self, names: list[str]) -> list[str]:
        return [f"{self.greeting}, {name}" for name in names]


async def tour_decorator() -> None:
    print("@batched")
    words = ["one", "two", "three", "four", "five"]
    vectors = await asyncio.gather(*(embed(word) for word in words))
    print("  vectors", list(vectors))
    hello, hi = Greeter("hello"), Greeter("hi")  # one batcher per instance
    print(" ", hello.greet("ada"), "/", hi.greet("bob"))
    hello.greet.batcher.close()
    hi.greet.batcher.close()


# 4. DataLoader: dedupe, cache, batching by key -- the GraphQL dataloader.
USERS = {1: "ada", 2: "bob", 3: "cy"}


async def load_users(ids: list[int]) -> list[str | BaseException | None]:
    print("  load_users", ids)
    return [KeyError(i) if i < 0 else USERS.get(i) for i in ids]


async def tour_dataloader() -> None:
    print("DataLoader")
    users = DataLoader(load_users, max_size=100)
    # Three loads in one tick, two of them equal: one call with the distinct keys.
    print("  users", list(await asyncio.gather(users.load(1), users.load(2), users.load(1))))
    print("  cached:", await users.load(2))
    users.prime(7, "grace")
    print("  many:", await users.load_many([7, 3, 4, -1], return_exceptions=True))
    users.clear(1)
    print("  reloaded:", await users.load(1))


async def main() -> None:
    await tour_batcher()
    tour_sync_batcher()
    await tour_decorator()
    await tour_dataloader()


if __name__ == "__main__":
    asyncio.run(main())
