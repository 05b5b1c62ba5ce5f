"""Every CLI command through the installed console script, on a real SQLite file.

Starting an interpreter costs about a second on a busy machine, so the subprocess tests
walk through whole flows; messages that need no store are checked in-process too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from batchwork.cli import main

from .conftest import APP, Cli


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("batchwork: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["jobs", "no_such_module:processor"], "cannot import 'no_such_module'"),
        (["jobs", "tests.cli.app_basic:not_a_processor"], "is a int, not a"),
        (["enqueue", APP, "no_such_job"], "unknown job name 'no_such_job'"),
        (["enqueue", APP, "add", "{not json"], "payload is not valid JSON"),
        (["stats", "sqlite:////etc/passwd/jobs.db"], "/etc/passwd"),
    ],
    ids=["bad-module", "not-a-processor", "unknown-job", "malformed-json", "unreachable-store"],
)
def test_console_script_errors_are_one_line_and_exit_2(
    cli: Cli, args: list[str], expected: str
) -> None:
    assert expected in one_line_error(cli(*args))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["jobs", "no_colon"], "APP must be module:attribute"),
        (["jobs", "tests.cli.app_basic:nope"], "has no attribute 'nope'"),
        (["run", APP, "no_such_job"], "unknown job name 'no_such_job'"),
        (["enqueue", APP, "add", "{}", "--run-at", "tomorrow"], "ISO 8601"),
        (["jobs", APP, "--status", "sleeping"], "unknown status 'sleeping'"),
        (["show", APP, "abc"], "job ID must be a positive integer"),
        (["purge", APP, "--older-than", "soon"], "duration must look like"),
        (["worker", APP, "--processes", "0"], "--processes must be >= 1"),
        (["jobs", APP, "--limit", "0"], "--limit must be >= 1"),
        (["worker", APP, "--tags", ","], "--tags needs at least one tag"),
        (["migrate", "mysql://db"], "is not supported"),
    ],
)
def test_usage_errors_in_process(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert expected in err


def test_produce_inspect_and_control_jobs(cli: Cli) -> None:
    first = cli.json("enqueue", APP, "add", '{"a": 1, "b": 2}')["id"]
    later = cli.json("enqueue", APP, "slow", '{"ticks": 1}', "--run-at", "+1h", "--priority", "5")
    jobs = cli.json("jobs", APP)
    assert [j["id"] for j in jobs] == [later["id"], first]
    assert jobs[0]["priority"] == 5
    assert jobs[0]["scheduled_for"] > jobs[1]["scheduled_for"]
    only = cli.json("jobs", APP, "--name", "add", "--status", "pending", "--limit", "5")
    assert [j["id"] for j in only] == [first]
    paged = cli.json("jobs", APP, "--limit", "1", "--offset", "1")
    assert [j["id"] for j in paged] == [first]
    assert cli.json("show", APP, str(first))["payload"] == {"a": 1, "b": 2}
    assert cli.json("cancel", APP, str(later["id"])) == {"id": later["id"], "changed": True}
    assert cli.query(lambda p: p.get(later["id"])).status == "cancelled"
    again = cli("cancel", APP, str(later["id"]))
    assert again.returncode == 1
    assert "already ended" in again.stdout
    retried = cli("retry", APP, str(later["id"]))
    assert retried.returncode == 0
    assert "pending again" in retried.stdout
    assert cli.query(lambda p: p.get(later["id"])).status == "pending"
    assert cli("show", APP, "424242").stderr.strip() == "batchwork: error: no job with id 424242"


def test_run_inline_tables_stats_and_purge(cli: Cli) -> None:
    ok = cli("run", APP, "add", '{"a": 20, "b": 22}')
    assert ok.returncode == 0, ok.stderr
    assert "finished" in ok.stdout
    assert "42" in ok.stdout
    failed = cli("run", APP, "fail", '"abc"')
    assert failed.returncode == 1
    assert "Traceback (most recent call last)" in failed.stdout
    assert "ValueError: invalid literal" in failed.stdout  # the cause chain is shown
    cli("enqueue", APP, "add", '{"a": 1, "b": 1}')
    table = cli("jobs", APP)
    lines = [line for line in table.stdout.splitlines() if line.strip()]
    header = next(line for line in lines if "STATUS" in line)
    assert header.index("STATUS") == lines[-3].index("pending")  # columns line up
    assert "RuntimeError: could not parse the report" in table.stdout
    assert "\x1b[" not in table.stdout  # no colour codes when piped
    stats = cli.json("stats", APP)
    assert stats["by_status"] == {"finished": 1, "errored": 1, "pending": 1}
    assert stats["by_name"]["add"] == {"finished": 1, "pending": 1}
    assert cli.json("purge", APP, "--older-than", "1h") == {"purged": 0}
    assert cli.json("purge", APP, "--older-than", "0s") == {"purged": 2}
    assert [j["status"] for j in cli.json("jobs", APP)] == ["pending"]


def test_crons_workers_and_migrate(cli: Cli, tmp_path: Path) -> None:
    crons = cli.json("crons", APP)
    assert [(c["name"], c["expression"]) for c in crons] == [("nightly", "0 3 * * *")]
    assert "At 03:00" in cli("crons", APP).stdout
    assert "no live workers" in cli("workers", APP).stdout
    target = tmp_path / "fresh.db"
    done = cli("migrate", f"sqlite:///{target}")
    assert done.returncode == 0, done.stderr
    assert target.exists()
    assert cli.json("jobs", f"sqlite:///{target}") == []


def test_a_store_url_is_an_app_on_every_backend(cli: Cli, store_url: str) -> None:
    assert cli("migrate", store_url).returncode == 0
    job_id = cli.json("enqueue", store_url, "anything", '{"x": "<b>1</b>"}')["id"]
    odd = cli("enqueue", store_url, "[/bold]odd[red]", '"[/i]"')  # not read as rich markup
    assert odd.returncode == 0, odd.stderr
    assert "[/bold]odd[red]" in cli("jobs", store_url, "--name", "[/bold]odd[red]").stdout
    jobs = cli.json("jobs", store_url, "--status", "pending", "--name", "anything")
    assert [(j["id"], j["name"], j["payload"]) for j in jobs] == [
        (job_id, "anything", {"x": "<b>1</b>"})
    ]
    assert cli.json("cancel", store_url, str(job_id)) == {"id": job_id, "changed": True}
    assert cli.json("stats", store_url)["by_status"] == {"cancelled": 1, "pending": 1}


def test_python_dash_m_is_the_same_cli(cli: Cli) -> None:
    done = cli.python("-m", "batchwork", "workers", APP, "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_dashboard_without_its_extra_says_how_to_install(cli: Cli) -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; "
        "from batchwork.cli import main; sys.exit(main(['dashboard', sys.argv[1]]))"
    )
    done = cli.python("-c", code, APP)
    assert "pip install 'batchwork[dashboard]'" in one_line_error(done)
