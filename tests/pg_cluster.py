"""A private PostgreSQL cluster for tests that must stop and start the database (outages).

`initdb` + `pg_ctl` in a fresh temp folder, on a free loopback port with its own socket
folder; the shared server on 5432 is never touched. PostgreSQL refuses to run as root, so under
root the cluster runs as an existing unprivileged user (`postgres`, else `nobody`) through
`runuser`. Anything missing (binaries, such a user, a cluster that will not start) skips the
test with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.server.harness import free_port, reachable

_CANDIDATE_USERS = ("postgres", "nobody")


def _run_as() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs a program as a non-root user, and that user."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root and `runuser` is missing: cannot start a private "
                    "PostgreSQL (it refuses to run as root)")
    for name in _CANDIDATE_USERS:
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return [runuser, "-u", name, "--"], user
    pytest.skip(f"running as root and none of the users {_CANDIDATE_USERS} exists to run a "
                "private PostgreSQL as (create one with `useradd`)")


class PrivatePostgres:
    """One throwaway cluster: `start()`, `stop(mode)`, `start()` again, `destroy()`."""

    def __init__(self) -> None:
        self.initdb = shutil.which("initdb")
        self.pg_ctl = shutil.which("pg_ctl")
        if self.initdb is None or self.pg_ctl is None:
            pytest.skip("initdb/pg_ctl are not on PATH: cannot run a private PostgreSQL")
        self.prefix, user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="inspector-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.sockets.mkdir()
        self.log_path = self.root / "postgres.log"
        if user is not None:
            self.root.chmod(0o755)  # root's temp folders are 0700: the user must get in
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self._initialised = False

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's `postgres` database (trust auth)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)

    def start(self, timeout: float = 30) -> PrivatePostgres:
        assert self.initdb is not None and self.pg_ctl is not None
        if not self._initialised:
            done = self._cmd(self.initdb, "-D", str(self.data), "-U", "postgres",
                             "--auth=trust", "-E", "UTF8", "--no-sync")
            if done.returncode != 0:
                pytest.skip(f"initdb failed for a private PostgreSQL: {done.stderr[-500:]}")
            self._initialised = True
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=50")
        done = self._cmd(self.pg_ctl, "-D", str(self.data), "-l", str(self.log_path), "-w",
                         "-t", str(int(timeout)), "-o", options, "start", timeout=timeout + 10)
        if done.returncode != 0 or not reachable("127.0.0.1", self.port):
            log = self.log_path.read_text(errors="replace")[-1500:] if self.log_path.exists() \
                else ""
            pytest.skip(f"private PostgreSQL did not start: {done.stderr[-500:]}\n{log}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m MODE`: `immediate` is a crash (no checkpoint, clients cut off)."""
        assert self.pg_ctl is not None
        self._cmd(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")
        deadline = time.monotonic() + 10
        while reachable("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def destroy(self) -> None:
        if self._initialised and (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
