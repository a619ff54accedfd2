"""Real processes for server tests: `inspector serve` on a free loopback port, the CLI, a
private mosquitto, and a fresh PostgreSQL schema per test module."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CLI = [sys.executable, "-c", "from inspector.cli import main; main()"]
REPO = Path(__file__).resolve().parents[2]


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (Linux; the usual default
    elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port free now, chosen outside the ephemeral range when it can be: a port
    picked by bind(0) is an ephemeral one, and any outgoing connection (a database or broker
    client, in this process or another) may take it before the server binds it."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(10000, 30000) if not low <= p <= high]
    rng = random.Random()
    for port in rng.sample(candidates, min(50, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a server or CLI process: no INSPECTOR_* leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    env["PYTHONPATH"] = str(REPO)
    env["INSPECTOR_DATA_DIR"] = str(data_dir)
    env["INSPECTOR_PROVIDERS"] = "cpu"
    env["INSPECTOR_WORK_THREADS"] = "2"
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120,
                          check=check, cwd=REPO)


def create_key(env: dict[str, str], role: str) -> str:
    """`inspector keys create --role ROLE`: the key is the last line of stdout."""
    out = run_cli(["keys", "create", "--role", role, "--name", f"test-{role}"], env)
    return out.stdout.strip().splitlines()[-1]


def read_answer(sock: socket.socket) -> str:
    """A whole HTTP answer from a raw socket: its head and its Content-Length body, which may
    arrive in separate reads."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


class PortTaken(RuntimeError):
    """The server could not bind its port: another process took it first."""


class ServerProcess:
    """`inspector serve` as a child process; logs go to a file shown when a test fails."""

    def __init__(self, env: dict[str, str], models_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.env = env
        self.models_dir = models_dir
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0, attempts: int = 3) -> ServerProcess:
        """Start the server and wait for /healthz. When another process took the chosen port
        between `free_port` and the server's bind (the server then exits, saying so), try
        again on a fresh port."""
        for _ in range(attempts - 1):
            try:
                return self._start_once(timeout)
            except PortTaken:
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        return self._start_once(timeout)

    def _start_once(self, timeout: float) -> ServerProcess:
        seen = len(self.log())
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--models", str(self.models_dir), "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log()[seen:]:
                    raise PortTaken(self.port)
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not come up in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def postgres_base_url() -> str:
    return os.environ.get("INSPECTOR_TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a fresh schema, dropped afterwards; skips the
    test when PostgreSQL is not reachable."""
    import sqlalchemy as sa

    base = postgres_base_url()
    url = sa.make_url(base)
    if not reachable(url.host or "127.0.0.1", url.port or 5432):
        pytest.skip(f"PostgreSQL is not reachable at {url.host}:{url.port or 5432} "
                    "(set INSPECTOR_TEST_POSTGRES_URL to point at one)")
    schema = f"insp_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


class Mosquitto:
    """A private broker on a free loopback port, with persistence so sessions survive a
    restart (the outage test stops and starts it)."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            pytest.skip("mosquitto is not installed")
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        # Started as root, mosquitto drops to the `mosquitto` user, which cannot write the
        # persistence file into a root-owned temporary folder: the sessions would be lost on
        # a restart. `user root` keeps it as the user that started it (no effect otherwise).
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 1\n{user}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("private mosquitto did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
