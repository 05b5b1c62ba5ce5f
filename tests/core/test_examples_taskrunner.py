"""The TaskRunner example runs, prints what the doc says, and is the doc's code verbatim."""

from __future__ import annotations

from ..examples import ROOT, fenced, run_example

EXAMPLE = ROOT / "examples" / "taskrunner_fallback.py"
DOC = ROOT / "docs" / "coming-from-ts-batcher.md"


def _fenced(language: str) -> list[str]:
    return fenced(DOC, language)


def test_the_example_runs_and_prints_what_the_doc_shows() -> None:
    done = run_example(EXAMPLE)
    assert done.stderr == ""
    assert done.returncode == 0
    assert done.stdout == _fenced("text")[0]


def test_the_doc_shows_the_example_verbatim() -> None:
    assert _fenced("python") == [EXAMPLE.read_text()]
