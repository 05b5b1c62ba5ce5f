"""The batching guide cannot rot: its tour runs, prints what the guide shows, is the
example file verbatim, and every snippet in the guide at least compiles and imports."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import batchwork

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "batching_tour.py"
DOC = ROOT / "docs" / "batching.md"


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_tour_runs_and_prints_what_the_guide_shows() -> None:
    # A fresh interpreter, as a reader would run it.
    package_root = str(Path(batchwork.__file__).parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stderr == ""
    assert done.returncode == 0
    assert done.stdout == fenced("text")[0]


def test_the_guide_shows_the_tour_verbatim() -> None:
    assert EXAMPLE.read_text() in fenced("python")


@pytest.mark.parametrize("snippet", fenced("python"))
def test_every_snippet_compiles_and_its_imports_exist(snippet: str) -> None:
    # Top-level ``await`` appears in the short snippets, as in an asyncio REPL.
    compile(snippet, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for line in snippet.splitlines():
        if line.startswith("from batchwork import "):
            for name in line.removeprefix("from batchwork import ").split(","):
                assert hasattr(batchwork, name.strip()), name
