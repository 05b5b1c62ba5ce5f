"""Helpers for the tests that keep the docs' examples honest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import batchwork

ROOT = Path(__file__).resolve().parents[1]


def fenced(doc: Path, language: str) -> list[str]:
    """The bodies of the ```language fenced blocks of a Markdown file, in order."""
    return re.findall(rf"```{language}\n(.*?)```", doc.read_text(), flags=re.DOTALL)


def run_example(path: Path) -> subprocess.CompletedProcess[str]:
    """Run an example in a fresh interpreter, as a reader would, with this batchwork."""
    package_root = str(Path(batchwork.__file__).parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=60
    )
