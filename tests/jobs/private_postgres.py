"""A private PostgreSQL cluster for the tests that restart or crash their server.

The shared test server must never be restarted, so these tests create their own cluster
(``initdb`` into a fresh directory, a free port, ``fsync=on``) and remove it afterwards.
PostgreSQL refuses to run as root: as root, every server command runs as the ``postgres``
user (``runuser``), in a directory that user owns.

The binaries are found through ``BATCHWORK_TEST_PG_BIN``, else ``pg_config --bindir``, else
``initdb`` on ``PATH``. Their absence fails the test with a clear message: CI has them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

PG_BIN_VARIABLE = "BATCHWORK_TEST_PG_BIN"
SERVER_USER = "postgres"
# The tests stop a server and wait for it: long enough for a loaded machine.
_WAIT = 60


def pg_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (fails the test when
    there is none)."""
    candidates: list[str] = []
    if os.environ.get(PG_BIN_VARIABLE):
        candidates.append(os.environ[PG_BIN_VARIABLE])
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(found.stdout.strip())
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        if all((Path(candidate) / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install the "
        f"PostgreSQL server package or set {PG_BIN_VARIABLE}; looked in {candidates or 'PATH'}",
        pytrace=False,
    )


def free_port() -> int:
    """A TCP port free on loopback right now (the server start retries if it is taken)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateCluster:
    """One throw-away PostgreSQL cluster: :meth:`start` it, :meth:`stop` it in a shutdown
    mode and :meth:`start_again`, :meth:`remove` it. ``dsn`` connects over loopback.

    ``listen`` adds addresses to listen on besides 127.0.0.1 and ``trusted`` the networks
    (CIDR) whose clients connect without a password, e.g. other network namespaces.
    """

    def __init__(self, *, listen: Sequence[str] = (), trusted: Sequence[str] = ()) -> None:
        self.bin = pg_bin()
        self.listen = ("127.0.0.1", *listen)
        self.trusted = tuple(trusted)
        self.root = Path(tempfile.mkdtemp(prefix="bw-private-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0  # chosen at start
        self._as_server_user = os.geteuid() == 0
        if self._as_server_user:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                pytest.fail(f"no {SERVER_USER!r} user to run PostgreSQL as (it refuses root)")
            os.chown(self.root, user.pw_uid, user.pw_gid)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Create the cluster and start it on a free port."""
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")
        with (self.data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            for network in self.trusted:
                hba.write(f"host all all {network} trust\n")
        for _ in range(5):  # another process may take the free port before the server
            self.port = free_port()
            if self._pg_ctl("start", "-o", self._options(), check=False).returncode == 0:
                return
        raise AssertionError(f"the private PostgreSQL did not start:\n{self.server_log()}")

    def stop(self, mode: str) -> None:
        """``pg_ctl stop -m mode``: ``fast`` is a clean shutdown, ``immediate`` a crash
        (no checkpoint; the next start replays the WAL). Returns once the server is gone."""
        self._pg_ctl("stop", "-m", mode)

    def start_again(self) -> None:
        """Start a stopped server with the options of its previous start; returns once it
        accepts connections."""
        self._pg_ctl("start", "-o", self._options())

    def remove(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _options(self) -> str:
        return (
            f"-c port={self.port} -c listen_addresses={','.join(self.listen)} "
            f"-c unix_socket_directories={self.root} -c fsync=on -c max_connections=60"
        )

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # -l: the server must not inherit our pipes, or reading them would wait for it.
        return self._run(
            "pg_ctl", *args, "-D", self.data, "-l", self.log, "-w", "-t", str(_WAIT), check=check
        )

    def _run(
        self, program: str, *args: str | Path, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / program), *map(str, args)]
        if self._as_server_user:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=_WAIT + 30)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n{self.server_log()}"
            )
        return done


@contextlib.contextmanager
def private_cluster(
    *, listen: Sequence[str] = (), trusted: Sequence[str] = ()
) -> Iterator[PrivateCluster]:
    """A started :class:`PrivateCluster`, removed on exit (a fixture's whole body)."""
    server = PrivateCluster(listen=listen, trusted=trusted)
    try:
        server.start()
        yield server
    finally:
        server.remove()
