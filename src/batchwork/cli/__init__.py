"""The ``batchwork`` command line: a thin shell over the library."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
