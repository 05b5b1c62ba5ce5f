"""The batching guide cannot rot: its tour runs, prints what the guide shows, is the
example file verbatim, and every snippet in the guide at least compiles and imports."""

from __future__ import annotations

import ast

import pytest

import batchwork

from ..examples import ROOT, run_example
from ..examples import fenced as fenced_in

EXAMPLE = ROOT / "examples" / "batching_tour.py"
DOC = ROOT / "docs" / "batching.md"


def fenced(language: str) -> list[str]:
    return fenced_in(DOC, language)


def test_the_tour_runs_and_prints_what_the_guide_shows() -> None:
    done = run_example(EXAMPLE)
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
