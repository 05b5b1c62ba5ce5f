"""The dashboard in a real browser: Debian's chromium driven by Playwright.

One uvicorn server on a free loopback port serves a dashboard over a real SQLite file;
tests change the store from outside (another processor on the same file, a real worker
process) and watch the page. Screenshots of each page go to ``/tmp`` as artifacts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import uvicorn
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from batchwork.dashboard import create_app
from batchwork.jobs import JobProcessor
from tests.cli.app_basic import make_processor

from .conftest import Seeded, seed

pytestmark = pytest.mark.browser

T = TypeVar("T")
SHOTS = Path("/tmp")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Live:
    base: str
    url: str
    db: Path
    seeded: Seeded

    def act(self, call: Callable[[JobProcessor], Awaitable[T]]) -> T:
        """Change the store from outside the server, as another program would."""

        async def go() -> T:
            processor = make_processor(self.url)
            try:
                return await call(processor)
            finally:
                await processor.close()

        # Playwright's sync API runs its own loop in this thread: use another thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("dashboard") / "jobs.db"
    url = f"sqlite:///{db}"
    first = make_processor(url)

    async def seeded_store() -> Seeded:
        try:
            return await seed(first)
        finally:
            await first.close()

    seeded = asyncio.run(seeded_store())
    app = create_app(make_processor(url), refresh_interval=0.5, allowed_hosts=("127.0.0.1",))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-server")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Live(f"http://127.0.0.1:{port}", url, db, seeded)
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is required: apt-get install chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    p = context.new_page()
    p.set_default_timeout(10_000)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    p.on("dialog", on_dialog)
    yield p
    context.close()
    assert dialogs == [], f"a page opened dialogs: {dialogs}"


def count(page: Page, status: str) -> int:
    return int(page.locator(f'.card [data-count="{status}"]').inner_text())


def test_overview_renders_counts_and_throughput_chart(live: Live, page: Page) -> None:
    page.goto(live.base + "/")
    assert count(page, "finished") >= 1
    assert count(page, "errored") >= 1
    assert page.locator("svg.chart rect.ok").count() >= 1
    assert page.locator("svg.chart rect.fail").count() >= 1
    expect(page.locator("#live-names")).to_contain_text("slow")
    page.screenshot(path=str(SHOTS / "batchwork-overview.png"), full_page=True)


def test_jobs_list_filters_by_status(live: Live, page: Page) -> None:
    page.goto(live.base + "/jobs")
    assert page.locator("tr[data-job]").count() >= 4
    page.select_option("select[name=status]", "errored")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(f"{live.base}/jobs?status=errored&name=&tag=")
    rows = page.locator("tr[data-job]")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".pill")).to_have_text("errored")
    page.goto(live.base + "/jobs")
    page.screenshot(path=str(SHOTS / "batchwork-jobs.png"), full_page=True)


def test_job_detail_shows_error_traceback(live: Live, page: Page) -> None:
    page.goto(f"{live.base}/jobs/{live.seeded.errored}")
    error = page.locator("#error")
    expect(error).to_contain_text("RuntimeError: could not parse the report")
    expect(error).to_contain_text("Traceback (most recent call last)")
    expect(error).to_contain_text("The above exception was the direct cause")
    expect(page.locator(".timeline")).to_contain_text("errored")
    page.screenshot(path=str(SHOTS / "batchwork-job.png"), full_page=True)


def test_cancel_and_retry_buttons_change_the_status(live: Live, page: Page) -> None:
    job_id = live.act(lambda p: p.enqueue("slow", {"ticks": 1}, run_at=timedelta(hours=1)))
    page.goto(f"{live.base}/jobs/{job_id}")
    header = page.locator("#live-job h2 .pill")
    expect(header).to_have_text("pending")
    page.click("button:has-text('Cancel')")
    expect(header).to_have_text("cancelled")
    expect(page.locator("#flash")).to_have_text("cancellation requested")
    assert live.act(lambda p: p.get(job_id)).status == "cancelled"
    page.click("button:has-text('Retry')")
    expect(header).to_have_text("pending")
    assert live.act(lambda p: p.get(job_id)).status == "pending"


def test_script_payload_shows_as_text_and_never_runs(live: Live, page: Page) -> None:
    page.goto(f"{live.base}/jobs/{live.seeded.script}")
    payload = page.locator("#payload")
    expect(payload).to_contain_text("<script>window.__pwned = 1</script>")
    expect(payload).to_contain_text('<img src=x onerror=\\"window.__pwned = 2\\">')
    assert page.locator("#payload script, #payload img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_enqueue_form_creates_a_job(live: Live, page: Page) -> None:
    page.goto(live.base + "/jobs")
    page.select_option("form.enqueue select[name=name]", "add")
    page.fill("form.enqueue textarea[name=payload]", '{"a": 40, "b": 2}')
    page.fill("form.enqueue input[name=run_at]", "2099-01-01T00:00:00")
    page.click("form.enqueue button[type=submit]")
    expect(page.locator("#flash")).to_have_text("enqueued")
    job_id = int(page.url.split("/jobs/")[1].split("?")[0])
    job = live.act(lambda p: p.get(job_id))
    assert job.payload == {"a": 40, "b": 2}
    assert job.scheduled_for.year == 2099


def test_live_refresh_updates_a_count_without_reloading(live: Live, page: Page) -> None:
    page.goto(live.base + "/")
    page.evaluate("window.__sameDocument = true")
    before = count(page, "cancelled")
    job_id = live.act(lambda p: p.enqueue("add", {"a": 1, "b": 1}, run_at=timedelta(hours=1)))
    live.act(lambda p: p.cancel(job_id))
    expect(page.locator('.card [data-count="cancelled"]')).to_have_text(str(before + 1))
    assert page.evaluate("window.__sameDocument") is True


def test_crons_page_describes_the_schedule(live: Live, page: Page) -> None:
    page.goto(live.base + "/crons")
    row = page.locator("#live-crons tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("nightly")
    expect(row).to_contain_text("0 3 * * *")
    expect(row).to_contain_text("03:00")
    page.screenshot(path=str(SHOTS / "batchwork-crons.png"), full_page=True)


def test_workers_page_shows_a_live_worker(live: Live, page: Page) -> None:
    env = {**os.environ, "BATCHWORK_TEST_DB": str(live.db)}
    cmd = [sys.executable, "-m", "batchwork", "worker", "tests.cli.app_basic:processor"]
    worker = subprocess.Popen([*cmd, "--tags", "gpu,etl"], cwd=ROOT, env=env)
    try:
        page.goto(live.base + "/workers")
        row = page.locator("#live-workers tbody tr")
        expect(row).to_have_count(1, timeout=20_000)  # appears through live refresh
        expect(row).to_contain_text(str(worker.pid))
        expect(row).to_contain_text("alive")
        expect(row.locator(".pill.tag")).to_have_text(["gpu", "etl"])
        page.screenshot(path=str(SHOTS / "batchwork-workers.png"), full_page=True)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
