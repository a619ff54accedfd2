"""`inspector demo` as a user runs it: a child process on a free port with a fresh data folder;
wait for the printed URLs, check the server, then Ctrl-C and a clean exit."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.server.harness import CLI, REPO, base_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.train]


def last_verdict(port: int, password: str) -> tuple[str, str]:
    """Stations/press-1 LastInspectionId and LastVerdict read by a real OPC UA client."""
    from asyncua import Client

    async def read() -> tuple[str, str]:
        client = Client(f"opc.tcp://127.0.0.1:{port}/inspector", timeout=10)
        client.set_user("demo")
        client.set_password(password)
        async with client:
            ns = await client.get_namespace_index("urn:inspector:line1")
            node = "ns={};s=Stations/press-1/{}".format
            return (await client.get_node(node(ns, "LastInspectionId")).read_value(),
                    await client.get_node(node(ns, "LastVerdict")).read_value())

    return asyncio.run(read())


def test_demo_runs_from_an_empty_folder_and_stops_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("asyncua", reason="the demo's OPC UA endpoint needs the [opcua] extra")
    pytest.importorskip("watchdog", reason="the demo's hot folder needs the [folder] extra")
    port = free_port()
    data = tmp_path / "demo"
    env = base_env(tmp_path / "unused")
    env.pop("INSPECTOR_DATA_DIR")
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        opcua_port = free_port()
        proc = subprocess.Popen([*CLI, "demo", "--port", str(port), "--data-dir", str(data),
                                 "--opcua-port", str(opcua_port)],
                                env=env, stdout=out, stderr=err, cwd=REPO)
        try:
            deadline = time.monotonic() + 240
            while "review queue" not in out_path.read_text():
                assert proc.poll() is None, f"demo exited early:\n{err_path.read_text()}"
                assert time.monotonic() < deadline, f"no URLs printed:\n{err_path.read_text()}"
                time.sleep(0.5)
            text = out_path.read_text()
            url = f"http://127.0.0.1:{port}"
            assert f"{url}/ui/" in text and f"{url}/docs" in text
            reviewer = re.search(r"reviewer key\s+(insp_\S+)", text)
            assert reviewer, text
            assert httpx.get(f"{url}/readyz", timeout=10).json()["ready"] is True
            auth = {"Authorization": f"Bearer {reviewer.group(1)}"}
            listed = httpx.get(f"{url}/v1/inspections", params={"limit": 100}, headers=auth,
                               timeout=10).json()["items"]
            assert len(listed) == 24
            assert {i["verdict"] for i in listed} == {"pass", "fail"}
            assert {i["station"] for i in listed} == {"press-1", "press-2"}
            assert httpx.get(f"{url}/docs", timeout=10).status_code == 200
            # the line's other doors: a dropped file is judged, PLCs read it over OPC UA
            assert f"opc.tcp://127.0.0.1:{opcua_port}/inspector" in text
            assert f"hot folder     {data / 'watch'}" in text
            sample = sorted((data / "dataset" / "test").glob("*/000.png"))[0]
            (data / "watch" / "dropped-1.png").write_bytes(sample.read_bytes())
            side = data / "watch" / "done" / "dropped-1.png.json"
            deadline = time.monotonic() + 30
            while not side.exists():
                assert time.monotonic() < deadline, err_path.read_text()
                time.sleep(0.2)
            answer = json.loads(side.read_text())["answer"]
            creds = json.loads((data / "demo-opcua.json").read_text())
            assert last_verdict(opcua_port, creds["password"]) == (answer["id"],
                                                                  answer["verdict"])
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    stderr = err_path.read_text()
    assert code == 0, stderr
    assert "Traceback" not in stderr and "demo stopped" in stderr
    assert (data / "models" / "demo" / "1" / "card.json").is_file()
