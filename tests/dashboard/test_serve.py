"""``batchwork dashboard``: the real command serving on a port, and its bind warning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from batchwork.dashboard._server import bind_warning, is_loopback

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.cli.app_basic:processor"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    env = {**os.environ, "BATCHWORK_TEST_DB": str(tmp_path / "jobs.db")}
    env.pop("BATCHWORK_DASHBOARD_TOKEN", None)
    script = Path(sys.executable).with_name("batchwork")
    proc = subprocess.Popen(
        [str(script), "dashboard", APP, "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, port


def _get(url: str, **headers: str) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, headers=headers, timeout=5)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing answered at {url}"
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return err


def test_dashboard_command_serves_loopback_and_refuses_other_hosts(tmp_path: Path) -> None:
    proc, port = _serve(tmp_path)
    try:
        ok = _get(f"http://127.0.0.1:{port}/api/jobs")
        assert ok.status_code == 200
        assert ok.json()["jobs"] == []
        rebound = _get(f"http://127.0.0.1:{port}/api/jobs", host="attacker.example")
        assert rebound.status_code == 400
    finally:
        err = _stop(proc)
    assert "warning" not in err
    assert f"http://127.0.0.1:{port}/" in err


def test_dashboard_warns_when_bound_beyond_loopback_without_token(tmp_path: Path) -> None:
    proc, port = _serve(tmp_path, "--host", "0.0.0.0")
    try:
        assert _get(f"http://127.0.0.1:{port}/api/stats").status_code == 200
    finally:
        err = _stop(proc)
    assert "warning: the dashboard is bound to 0.0.0.0 without --token" in err


@pytest.mark.parametrize(
    ("host", "token", "warns"),
    [
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
        ("0.0.0.0", None, True),
        ("192.168.1.20", None, True),
        ("0.0.0.0", "s3cret", False),
    ],
)
def test_bind_warning(host: str, token: str | None, warns: bool) -> None:
    assert (bind_warning(host, token) is not None) is warns
    assert is_loopback(host) is (host in {"127.0.0.1", "localhost", "::1"})
