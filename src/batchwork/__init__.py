"""batchwork: group work in Python.

Three parts, one library:

* micro-batching -- :class:`Batcher`, :class:`SyncBatcher`, :func:`batched`,
  :class:`DataLoader`: many callers, one batch call, each caller gets its own result;
* concurrent task runs -- :class:`TaskRunner` and :func:`map`: a concurrency limit,
  dependencies with fallbacks, progress;
* durable jobs and crons -- :mod:`batchwork.jobs`, on SQLite or PostgreSQL.

``import batchwork`` loads only standard-library modules.
"""

from __future__ import annotations

# micro-batching (issue: micro-batching core)
from ._lru import LRUCache as LRUCache
# task runs (issue: TaskRunner)

__version__ = "0.1.0"

__all__: list[str] = [
    "LRUCache",
]
