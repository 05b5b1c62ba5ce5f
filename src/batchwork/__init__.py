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

# Every public name is re-exported here; the modules behind them are private.
from ._batch_stats import BatcherStats as BatcherStats
from ._batch_stats import BatchInfo as BatchInfo
from ._batcher import Batcher as Batcher
from ._dataloader import DataLoader as DataLoader
from ._decorator import batched as batched
from ._keyconfig import KeyConfig as KeyConfig
from ._lru import LRUCache as LRUCache
from ._progress import Progress as Progress
from ._retry import Retry as Retry
from ._sync import SyncBatcher as SyncBatcher
from ._taskrunner import Skipped as Skipped
from ._taskrunner import TaskHandle as TaskHandle
from ._taskrunner import TaskRunner as TaskRunner
from ._taskrunner import map as map

__version__ = "0.1.0"

__all__: list[str] = [
    "BatchInfo",
    "Batcher",
    "BatcherStats",
    "DataLoader",
    "KeyConfig",
    "LRUCache",
    "Progress",
    "Retry",
    "Skipped",
    "SyncBatcher",
    "TaskHandle",
    "TaskRunner",
    "batched",
    "map",
]
