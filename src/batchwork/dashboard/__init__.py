"""The batchwork web dashboard (extra ``batchwork[dashboard]``: Starlette and Jinja2).

Pages: overview (counts by status and name, throughput chart, pickup latency), jobs
(filters, paging, enqueue), job detail (payload, result, error traceback, timeline,
cancel/retry), crons, workers; every page refreshes itself. A JSON API under ``/api/``
serves the same data. Mount it in your own ASGI app, or run ``batchwork dashboard APP``.

Example::

    from batchwork.dashboard import create_app

    app = create_app(processor, token="s3cret")      # an ASGI app
"""

from __future__ import annotations

from ._app import create_app as create_app
from ._server import serve as serve

__all__ = ["create_app", "serve"]
