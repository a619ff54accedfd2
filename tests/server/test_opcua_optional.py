"""OPC UA is optional: without asyncua the server starts as before while OPC UA is off, and
says what to install when it is on; its settings refuse a server no one could safely use."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from inspector.settings import Settings
from tests.model_factory import make_package
from tests.server.harness import REPO, base_env, free_port, run_cli

#: Runs the CLI in a Python where `import asyncua` fails, as on an install without the extra.
NO_ASYNCUA = [sys.executable, "-c",
              "import sys; sys.modules['asyncua'] = None; from inspector.cli import main; main()"]
OPCUA = {"INSPECTOR_OPCUA_ENDPOINT": "opc.tcp://127.0.0.1:4840/inspector",
         "INSPECTOR_OPCUA_USERS": json.dumps({"plc": "plc-password-1"})}


def test_server_without_asyncua_serves_while_opcua_is_off(tmp_path: Path) -> None:
    make_package(tmp_path / "models")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["asyncua"] = None  # not installed
        from fastapi.testclient import TestClient
        from inspector.app import create_app
        from inspector.settings import load_settings
        from tests.server.conftest import good_frame

        settings = load_settings(None, data_dir={str(tmp_path / "data")!r},
                                 models_dir={str(tmp_path / "models")!r}, auth_enabled=False)
        with TestClient(create_app(settings)) as http:
            r = http.post("/v1/inspect", params={{"station": "s1"}}, content=good_frame(),
                          headers={{"Content-Type": "image/jpeg"}})
            assert r.status_code == 200, r.text
            assert http.get("/readyz").json()["opcua"] == "off"
        print("served", r.json()["verdict"])
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=base_env(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "served pass" in proc.stdout


def test_serve_names_the_extra_when_opcua_is_on_without_asyncua(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data", **OPCUA)
    proc = subprocess.run([*NO_ASYNCUA, "serve", "--models", str(tmp_path)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "pip install 'inspector[opcua]'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_serve_says_why_when_the_opcua_port_is_taken(tmp_path: Path) -> None:
    pytest.importorskip("asyncua", reason="needs the [opcua] extra")
    make_package(tmp_path / "models")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env(tmp_path / "data", INSPECTOR_AUTH_ENABLED="false", **{
            **OPCUA, "INSPECTOR_OPCUA_ENDPOINT": f"opc.tcp://127.0.0.1:{port}/inspector"})
        proc = run_cli(["serve", "--models", str(tmp_path / "models"),
                        "--port", str(free_port())], env, check=False)
    # One error line naming the endpoint and what to do, before anything starts.
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert f"opc.tcp://127.0.0.1:{port}/inspector" in errors[0] and "free port" in errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("values", "message"), [
    ({"opcua_endpoint": "opc.tcp://127.0.0.1:4840/x"}, "no client could log in"),
    ({"opcua_endpoint": "http://127.0.0.1:4840/x", "opcua_allow_anonymous": True},
     "must look like opc.tcp://"),
    ({"opcua_endpoint": "opc.tcp://127.0.0.1/x", "opcua_allow_anonymous": True},
     "a host and a port"),
    ({"opcua_endpoint": "opc.tcp://127.0.0.1:4840/x", "opcua_users": {"plc": "short"}},
     "8+ characters"),
    ({"opcua_endpoint": "opc.tcp://0.0.0.0:4840/x", "opcua_users": {"plc": "long-enough"}},
     "would be unencrypted"),
    ({"opcua_endpoint": "opc.tcp://127.0.0.1:4840/x", "opcua_allow_anonymous": True,
      "opcua_certificate": "cert.der"}, "both opcua_certificate and opcua_private_key"),
])
def test_unsafe_opcua_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("+", r"\+").replace("?", r"\?")):
        Settings(**values)  # type: ignore[arg-type]


def test_opcua_settings_that_are_accepted() -> None:
    assert Settings().opcua_endpoint is None
    on_loopback = Settings(opcua_endpoint="opc.tcp://127.0.0.1:4840/x",
                           opcua_users={"plc": "long-enough"})  # type: ignore[dict-item]
    assert on_loopback.opcua_users["plc"].get_secret_value() == "long-enough"
    assert "long-enough" not in repr(on_loopback)
    closed_cell = Settings(opcua_endpoint="opc.tcp://0.0.0.0:4840/x",
                           opcua_allow_anonymous=True, opcua_allow_unencrypted=True)
    assert closed_cell.opcua_allow_anonymous
