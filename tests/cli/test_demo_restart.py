"""`inspector demo` stopped with Ctrl-C and started again at once in the same folder: same
port, same keys, no frames posted twice, the model reused, and a folder that `--data-dir`
means the same thing for as for `inspector keys`.

The model is a tiny ONNX package put where the demo looks for `demo:1`, so no torch and no
training: the test is about restarting, not training (tests/cli/test_demo.py trains)."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from inspector.demo import DemoError, check_port
from tests.model_factory import make_package
from tests.server.harness import CLI, REPO, base_env, free_port, run_cli

pytestmark = pytest.mark.slow

KEY_RE = {role: re.compile(rf"{role} key\s+(insp_\S+)") for role in ("camera", "reviewer", "admin")}


def _start(data: Path, port: int, env: dict[str, str], logs: Path, run: int
           ) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start the demo; return the process, its stdout up to the banner, and its stderr."""
    out_path, err_path = logs / f"stdout{run}.txt", logs / f"stderr{run}.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([*CLI, "demo", "--port", str(port), "--data-dir", str(data)],
                                env=env, stdout=out, stderr=err, cwd=REPO)
    deadline = time.monotonic() + 60
    while "review queue" not in out_path.read_text():
        if proc.poll() is not None:
            raise AssertionError(f"demo run {run} exited early:\n{err_path.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"demo run {run}: no URLs printed:\n{err_path.read_text()}")
        time.sleep(0.2)
    return proc, out_path.read_text(), err_path.read_text()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=30) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _keys(text: str) -> dict[str, str]:
    found = {role: r.search(text) for role, r in KEY_RE.items()}
    assert all(found.values()), text
    return {role: m.group(1) for role, m in found.items() if m}


def test_demo_restarts_at_once_with_its_keys_records_and_model(tmp_path: Path) -> None:
    data, port = tmp_path / "demo", free_port()
    make_package(data / "models", name="demo", version="1", width=128, height=128)
    env = base_env(tmp_path / "unused")
    env.pop("INSPECTOR_DATA_DIR")
    url = f"http://127.0.0.1:{port}"

    proc, out1, _ = _start(data, port, env, tmp_path, 1)
    try:
        keys = _keys(out1)
        assert "posted 24 frames" in out1
        # A browser-like keep-alive connection: the server closes it at Ctrl-C, which leaves
        # the server's end in TIME_WAIT on the demo's port.
        client = httpx.Client(base_url=url, timeout=10,
                              headers={"Authorization": f"Bearer {keys['reviewer']}"})
        listed = client.get("/v1/inspections", params={"limit": 100}).json()["items"]
        assert len(listed) == 24
    finally:
        _stop(proc)
    client.close()

    proc, out2, err2 = _start(data, port, env, tmp_path, 2)
    try:
        assert _keys(out2) == keys
        assert "posted 0 frames" in out2 and "24 posted by an earlier run" in out2
        assert "reusing the model" in err2 and "training" not in err2, err2
        auth = {"Authorization": f"Bearer {keys['reviewer']}"}
        listed = httpx.get(f"{url}/v1/inspections", params={"limit": 100}, headers=auth,
                           timeout=10).json()["items"]
        assert len(listed) == 24
        assert stat.S_IMODE((data / "demo-keys.json").stat().st_mode) == 0o600

        # `--data-dir <demo folder>` is the demo's database, as for any state folder.
        made = run_cli(["keys", "create", "--role", "reviewer", "--data-dir", str(data)], env)
        key = made.stdout.strip().splitlines()[-1]
        r = httpx.get(f"{url}/v1/inspections", headers={"Authorization": f"Bearer {key}"},
                      timeout=10)
        assert r.status_code == 200, r.text
    finally:
        _stop(proc)


def test_port_probe_still_refuses_a_port_someone_listens_on() -> None:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(DemoError, match="cannot listen"):
            check_port("127.0.0.1", s.getsockname()[1])
