"""The README's code runs as shown, so the quick tour cannot rot."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from .examples import ROOT, fenced

BLOCKS = fenced(ROOT / "README.md", "python")


def test_every_python_block_parses() -> None:
    assert len(BLOCKS) >= 5
    for block in BLOCKS:
        compile(block, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_block_runs(index: int, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_readme_shows_the_taskrunner_example_verbatim() -> None:
    assert (ROOT / "examples" / "taskrunner_fallback.py").read_text() in BLOCKS
