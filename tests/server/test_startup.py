"""Startup: invalid packages are refused with a clear log line while the rest serve; the
CLI's key commands; settings precedence and the validators that refuse unsafe settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from inspector.settings import Settings, load_settings
from tests.model_factory import make_package
from tests.server.conftest import good_frame
from tests.server.harness import ServerProcess, base_env, create_key, run_cli


@pytest.mark.slow
def test_invalid_packages_are_refused_and_the_rest_serve(tmp_path: Path) -> None:
    models = tmp_path / "models"
    good = make_package(models, name="good")
    duplicate = models / "zz-copy" / "1"
    shutil.copytree(good, duplicate)  # same name:version as "good": refused, first one serves
    tampered = make_package(models, name="tampered")
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes() + b"\0")
    broken = make_package(models, name="broken")
    card = json.loads((broken / "card.json").read_text())
    card["threshold"] = "high"
    (broken / "card.json").write_text(json.dumps(card))
    env = base_env(tmp_path / "data", INSPECTOR_AUTH_ENABLED="false",
                   INSPECTOR_DEFAULT_MODEL="good")
    with ServerProcess(env, models, tmp_path / "server.log") as server:
        listed = httpx.get(f"{server.url}/v1/models").json()
        assert [m["name"] for m in listed["models"]] == ["good"]
        assert set(listed["refused"]) == {str(tampered), str(broken), str(duplicate)}
        assert "already loaded" in listed["refused"][str(duplicate)]
        assert "sha256" in listed["refused"][str(tampered)]
        r = httpx.post(f"{server.url}/v1/inspect", params={"station": "any"},
                       content=good_frame(), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 200 and r.json()["model"]["name"] == "good"
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["ready"] is True and len(ready["refused"]) == 3
        log = server.log()
    assert f"refusing model package {tampered}" in log
    assert f"refusing model package {broken}" in log and "threshold" in log


@pytest.mark.slow
def test_no_models_means_not_ready(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    env = base_env(tmp_path / "data", INSPECTOR_AUTH_ENABLED="false")
    with ServerProcess(env, tmp_path / "models", tmp_path / "server.log") as server:
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        r = httpx.post(f"{server.url}/v1/inspect", params={"station": "s"},
                       content=good_frame(), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 404 and r.json()["error"]["hint"]


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data")
    key = create_key(env, "camera")
    assert key.startswith("insp_")
    prefix = key.split("_")[1]
    listed = run_cli(["keys", "list"], env).stdout
    assert prefix in listed and key not in listed
    db_bytes = (tmp_path / "data" / "inspector.db").read_bytes()
    assert key.encode() not in db_bytes  # stored hashed only
    assert run_cli(["keys", "revoke", prefix], env).returncode == 0
    bad = run_cli(["keys", "create", "--role", "janitor"], env, check=False)
    assert bad.returncode == 2 and "camera" in bad.stderr


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "inspector.toml"
    cfg.write_text('port = 9001\nline = "from-file"\nmax_batch = 4\n'
                   '[stations]\nweld-1 = "tiles:3"\n')
    monkeypatch.setenv("INSPECTOR_LINE", "from-env")
    s = load_settings(cfg, port=9100)
    assert s.port == 9100 and s.line == "from-env" and s.max_batch == 4
    assert s.stations == {"weld-1": "tiles:3"}
    monkeypatch.setenv("INSPECTOR_DATABASE_URL", "postgresql://u@db/x")
    assert load_settings().database_url == "postgresql+psycopg://u@db/x"


def test_settings_refuse_unsafe_values() -> None:
    with pytest.raises(ValidationError, match="refused on host"):
        Settings(auth_enabled=False, host="0.0.0.0")
    assert Settings(auth_enabled=False, host="127.0.0.1").auth_enabled is False
    with pytest.raises(ValidationError, match="16 characters"):
        Settings.model_validate(
            {"webhooks": [{"name": "erp", "url": "http://x", "secret": "short"}]})
    with pytest.raises(ValidationError, match="station names"):
        Settings(stations={"a/b": "m"})
    with pytest.raises(ValidationError, match="mqtt_url"):
        Settings(mqtt_url="http://broker")
    with pytest.raises(ValidationError):
        Settings(line="line/1")


def test_a_settings_error_names_the_field_but_never_echoes_a_secret(tmp_path: Path) -> None:
    env = base_env(tmp_path / "d", INSPECTOR_WEBHOOKS=json.dumps(
        [{"name": "mes", "url": "ftp://mes.local/hook", "secret": "hunter2-short"}]),
        INSPECTOR_OPCUA_ENDPOINT="opc.tcp://127.0.0.1:4999/inspector",
        INSPECTOR_OPCUA_USERS=json.dumps({"plc": "pw-tiny"}))
    out = run_cli(["serve"], env, check=False)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip()
    assert line.startswith("error: invalid settings: ") and "\n" not in line, line
    assert "webhooks.0.secret: webhook secret must be at least 16 characters" in line
    assert "webhooks.0.url:" in line and "opcua_users:" in line
    for secret in ("hunter2-short", "pw-tiny"):
        assert secret not in out.stderr + out.stdout


@pytest.mark.slow
def test_the_harness_moves_to_a_fresh_port_when_another_process_took_its_port(
    tmp_path: Path,
) -> None:
    """The server exits with one line when its port is taken; the test harness then starts it
    on a fresh port instead of failing a whole module (a port picked free can be taken by any
    outgoing connection before the server binds it)."""
    import socket

    models = tmp_path / "models"
    make_package(models)
    env = base_env(tmp_path / "data", INSPECTOR_AUTH_ENABLED="false")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = int(blocker.getsockname()[1])
        server = ServerProcess(env, models, tmp_path / "server.log")
        server.port, server.url = taken, f"http://127.0.0.1:{taken}"
        with server:
            assert server.port != taken
            assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert "address already in use" in server.log()
