"""``python -m benchmarks``: run every ``benchmarks/bench_*.py`` module's ``main()``.

Each ``main()`` prints its own JSON. ``python -m benchmarks taskrunner`` runs only the
modules whose name contains ``taskrunner``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def run(selected: list[str]) -> None:
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        if selected and not any(word in path.stem for word in selected):
            continue
        module = importlib.import_module(f"benchmarks.{path.stem}")
        module.main()


if __name__ == "__main__":
    run(sys.argv[1:])
