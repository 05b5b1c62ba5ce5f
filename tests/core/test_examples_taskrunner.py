"""The TaskRunner example runs, prints what the doc says, and is the doc's code verbatim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import batchwork

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "taskrunner_fallback.py"
DOC = ROOT / "docs" / "coming-from-ts-batcher.md"


def _fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_example_runs_and_prints_what_the_doc_shows() -> None:
    # A fresh interpreter, as a reader would run it (and its event loop is its own).
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
    assert done.stdout == _fenced("text")[0]


def test_the_doc_shows_the_example_verbatim() -> None:
    assert _fenced("python") == [EXAMPLE.read_text()]
