"""Workers on two hosts share one PostgreSQL queue: each "host" is a network namespace with
its own hostname, joined to this one by a veth pair, and its workers reach a private
cluster over that link only. Needs root (``ip netns``), as CI has.
"""

from __future__ import annotations

import fcntl
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from batchwork.jobs import JobProcessor, JobStatus

from ..backends import postgres_url
from . import test_processes
from .apps.support import wait_until
from .private_postgres import PrivateCluster, private_cluster
from .test_processes import ROOT, Workers, count_workers, exit_code, lines

pytestmark = pytest.mark.slow

processor = test_processes.processor  # on the private cluster's ``store_url`` (below)

# A /24 of this range per test run, one /30 per host in it: root side .4i+1, host .4i+2.
NETWORK = "10.231"
HOSTS = 2
CONCURRENCY = 4
JOBS = 1000


@dataclass(frozen=True)
class Host:
    """One network namespace with a veth pair to the root namespace."""

    namespace: str
    link: str  # the root-side end; deleting it deletes the pair
    hostname: str
    address: str  # inside the namespace
    server_side: str  # the root-side address the host's workers connect to

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace, under the host's own hostname (a UTS
        namespace); every step execs, so the process keeps the pid ``Popen`` reports."""
        inner = 'hostname "$0" && exec "$@"'
        return [
            *("ip", "netns", "exec", self.namespace, "unshare", "--uts", "--"),
            *("sh", "-c", inner, self.hostname, *argv),
        ]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def _must(*args: str) -> None:
    done = _ip(*args)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()} (needs root)"


def _free_subnet() -> int:
    """A third octet whose /24 no interface of this namespace uses yet."""
    shown = _ip("-o", "-4", "addr", "show")
    for third in random.sample(range(256), 256):
        if f" {NETWORK}.{third}." not in shown.stdout:
            return third
    raise AssertionError(f"no free /24 left in {NETWORK}.0.0/16")


def _add_host(token: str, third: int, index: int) -> Host:
    host = Host(
        namespace=f"bwtest-{token}-{index}",
        link=f"bw{token}{index}",
        hostname=f"bwhost-{token}-{index}",
        address=f"{NETWORK}.{third}.{4 * index + 2}",
        server_side=f"{NETWORK}.{third}.{4 * index + 1}",
    )
    _must("netns", "add", host.namespace)
    _must("link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
    _must("addr", "add", f"{host.server_side}/30", "dev", host.link)
    _must("link", "set", host.link, "up")
    _must("-n", host.namespace, "addr", "add", f"{host.address}/30", "dev", "eth0")
    _must("-n", host.namespace, "link", "set", "eth0", "up")
    return host


def _remove_host(namespace: str, link: str) -> None:
    _ip("link", "del", link)  # either may be missing after a setup that failed halfway
    _ip("netns", "del", namespace)


@pytest.fixture(scope="module")
def hosts() -> Iterator[list[Host]]:
    token = uuid4().hex[:6]
    # Parallel runs pick their subnets one at a time, each seeing the others' addresses.
    lock_path = Path(tempfile.gettempdir()) / "batchwork-test-netns.lock"
    try:
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            third = _free_subnet()
            made = [_add_host(token, third, index) for index in range(HOSTS)]
        yield made
    finally:  # by name: a setup that failed halfway leaves some of them
        for index in range(HOSTS):
            _remove_host(f"bwtest-{token}-{index}", f"bw{token}{index}")


@pytest.fixture(scope="module")
def cluster(hosts: list[Host]) -> Iterator[PrivateCluster]:
    third = hosts[0].address.split(".")[2]
    listen = [host.server_side for host in hosts]
    with private_cluster(listen=listen, trusted=[f"{NETWORK}.{third}.0/24"]) as server:
        yield server


class HostWorkers(Workers):
    """:class:`Workers` started on the hosts, each connecting to its own link's address."""

    def __init__(self, cluster: PrivateCluster, schema: str, out: Path, logs: Path) -> None:
        super().__init__(postgres_url(cluster.dsn, schema), out, logs)
        self.cluster = cluster
        self.schema = schema

    def start_on(self, host: Host) -> subprocess.Popen[bytes]:
        url = postgres_url(self.cluster.dsn.replace("127.0.0.1", host.server_side), self.schema)
        argv = [sys.executable, "-m", "tests.jobs.apps.worker_app", str(CONCURRENCY)]
        with (self.logs / f"{host.hostname}.log").open("wb") as log:
            proc = subprocess.Popen(
                host.command(*argv),
                cwd=ROOT,
                env={**self.env, "BW_TEST_STORE": url},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc


@pytest.fixture
def schema() -> str:
    return f"bw_{uuid4().hex[:12]}"


@pytest.fixture
def store_url(cluster: PrivateCluster, schema: str) -> str:
    """The schema on the private cluster, for the process tests' ``processor`` fixture."""
    return postgres_url(cluster.dsn, schema)


@pytest.fixture
def workers(cluster: PrivateCluster, schema: str, tmp_path: Path) -> Iterator[HostWorkers]:
    started = HostWorkers(cluster, schema, tmp_path / "out.txt", tmp_path)
    yield started
    started.close()


def client_addresses(cluster: PrivateCluster) -> set[str]:
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT host(client_addr) FROM pg_stat_activity WHERE client_addr IS NOT NULL"
        ).fetchall()
    return {row[0] for row in rows}


async def test_workers_on_two_hosts_run_each_job_exactly_once(
    hosts: list[Host], cluster: PrivateCluster, processor: JobProcessor, workers: HostWorkers
) -> None:
    procs = {host.hostname: workers.start_on(host) for host in hosts}
    await count_workers(processor, HOSTS)
    listed = await processor.workers()
    assert {(w.hostname, w.pid) for w in listed} == {(h, p.pid) for h, p in procs.items()}
    assert {host.address for host in hosts} <= client_addresses(cluster)

    # Each worker holds at most CONCURRENCY jobs: all of these running means both hosts run
    # a full share at once.
    waiting = [await processor.enqueue("polite") for _ in range(HOSTS * CONCURRENCY)]

    async def all_hosts_busy() -> bool:
        return sum(len(w.running) for w in await processor.workers()) == len(waiting)

    await wait_until(all_hosts_busy, within=20)
    assert {len(w.running) for w in await processor.workers()} == {CONCURRENCY}

    ids = await processor.enqueue_many("record", list(range(JOBS)))
    for job_id in waiting:
        assert await processor.cancel(job_id)

    async def all_done() -> bool:
        by_status = (await processor.stats()).by_status
        return by_status.get("finished", 0) == JOBS and by_status.get("cancelled") == len(waiting)

    await wait_until(all_done, within=60)
    for proc in workers.procs:
        proc.send_signal(signal.SIGTERM)
    for proc in workers.procs:
        assert await exit_code(proc) == 0
    seen = [int(line) for line in lines(Path(workers.env["BW_TEST_OUT"])) if line.isdigit()]
    assert len(seen) == JOBS  # no duplicates ...
    assert sorted(seen) == sorted(ids)  # ... and none missing
    jobs = await processor.list(name="record", limit=2 * JOBS)
    assert {(job.status, job.attempts) for job in jobs} == {(JobStatus.FINISHED, 1)}
    assert await processor.workers() == []
