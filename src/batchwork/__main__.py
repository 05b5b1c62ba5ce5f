"""``python -m batchwork``: the same as the ``batchwork`` console script."""

from batchwork.cli import main

raise SystemExit(main())
