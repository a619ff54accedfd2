"""The container files as a user would run them (Docker itself cannot run in CI): the compose
file parses and wires the server to PostgreSQL and Mosquitto, and the Dockerfile serves as a
non-root user with writable volumes, a readiness healthcheck, and CI's own install step."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from inspector.settings import Settings

yaml = pytest.importorskip("yaml", reason="PyYAML parses the compose file (dev extra)")

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _dockerfile() -> list[str]:
    """Dockerfile instructions, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_compose_wires_server_database_and_broker() -> None:
    services = _compose()["services"]
    assert set(services) >= {"inspector", "postgres", "mosquitto"}
    server = services["inspector"]
    env = server["environment"]
    # The URLs name the compose services and are accepted by the server's own settings.
    settings = Settings(database_url=env["INSPECTOR_DATABASE_URL"],
                        mqtt_url=env["INSPECTOR_MQTT_URL"], line=env["INSPECTOR_LINE"])
    assert "@postgres:5432/" in str(settings.database_url)
    assert str(settings.mqtt_url).startswith("mqtt://mosquitto:")
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    mounts = {m.split(":")[1] for m in server["volumes"]}
    assert mounts == {"/data", "/models"}
    broker_conf = [v for v in services["mosquitto"]["volumes"] if v.endswith(".conf:ro")]
    assert broker_conf, "mosquitto 2 needs a config to listen beyond localhost"
    conf = REPO / broker_conf[0].split(":")[0]
    assert "listener 1883" in conf.read_text(encoding="utf-8")
    declared = set(_compose().get("volumes", {}))
    named = {m.split(":")[0] for s in services.values() for m in s.get("volumes", [])
             if not m.startswith((".", "/"))}
    assert named <= declared, f"undeclared named volumes: {named - declared}"


def test_dockerfile_runs_as_non_root_with_writable_volumes_and_readiness_check() -> None:
    lines = _dockerfile()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    chowns = [line for line in lines if "chown" in line and line.startswith("RUN ")]
    assert any("/data" in c and "/models" in c for c in chowns), chowns
    volume = next(line for line in lines if line.startswith("VOLUME "))
    assert "/data" in volume and "/models" in volume
    health = next(line for line in lines if line.startswith("HEALTHCHECK "))
    assert "/readyz" in health, "healthy must mean ready to judge frames, not merely alive"
    entry = next(line for line in lines if line.startswith("ENTRYPOINT "))
    assert '"serve"' in entry and '"0.0.0.0"' in entry


def test_dockerfile_installs_the_way_ci_does() -> None:
    """The image runs the install step CI runs (a fresh venv, pip install of this project),
    minus the extras that bring torch and the test tools."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^pip install -q -e \"\.\[train,dev\]\"$", ci, re.M)
    run = " ".join(line for line in _dockerfile() if line.startswith("RUN "))
    assert "python3 -m venv /opt/venv" in run
    assert re.search(r"/opt/venv/bin/pip install (\.|\"\.\[connect\]\")(\s|$)", run)
    assert "[train" not in run, "the server image must not install torch"
