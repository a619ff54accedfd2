"""The `opcua:` trigger with real components: a real `inspector serve` with its OPC UA server on
(RequestFrame() calls from a real asyncua client), a PLC stand-in (a real asyncua server) that
toggles, counts, names parts, goes away and comes back, and the command line's refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

asyncua = pytest.importorskip("asyncua", reason="the opcua trigger tests need the [opcua] extra")
from asyncua import Client, ua  # noqa: E402

from inspector.connect.opcua import OpcUaLogin, OpcUaTrigger, frames_for, parse_node  # noqa: E402
from inspector.connect.source import SourceSpec  # noqa: E402
from inspector.connect.stream import TriggerOptions, make_trigger  # noqa: E402
from inspector.connect.triggers import Counters  # noqa: E402
from tests.connect.conftest import Running, records, wait_for  # noqa: E402
from tests.connect.mjpeg import MjpegCamera  # noqa: E402
from tests.connect.plc import NAMESPACE, PASSWORD, USER, Plc  # noqa: E402
from tests.connect.test_stream import adapter, balanced, scene  # noqa: E402
from tests.model_factory import make_package  # noqa: E402
from tests.server.conftest import Live  # noqa: E402
from tests.server.harness import (  # noqa: E402
    REPO,
    ServerProcess,
    base_env,
    create_key,
    free_port,
    run_cli,
)

pytestmark = pytest.mark.slow

SERVER_USER, SERVER_PASSWORD = "camera-adapter", "adapter-password-1"
LOG = "inspector.connect.opcua"


@pytest.fixture(scope="module")
def opc_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, str]]:
    """A real server with OPC UA on (a user with a password) and station s1 configured, so
    its nodes exist from the start; yields it and its OPC UA endpoint."""
    root = tmp_path_factory.mktemp("opcua-trigger")
    make_package(root / "models")
    line = f"t{uuid.uuid4().hex[:10]}"
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/inspector"
    env = base_env(root / "data", INSPECTOR_LINE=line, INSPECTOR_MAX_DELAY_MS="5",
                   INSPECTOR_STATIONS='{"s1": "tiny:1"}', INSPECTOR_DEFAULT_MODEL="tiny:1",
                   INSPECTOR_OPCUA_ENDPOINT=endpoint,
                   INSPECTOR_OPCUA_USERS=json.dumps({SERVER_USER: SERVER_PASSWORD}))
    keys = {role: create_key(env, role) for role in ("camera", "reviewer")}
    with ServerProcess(env, root / "models", root / "server.log") as server:
        yield Live(server.url, line, keys, server, mqtt=False), endpoint


@pytest.fixture(scope="module")
def plc() -> Iterator[Plc]:
    with Plc() as running:
        yield running


@pytest.fixture
def camera() -> Iterator[MjpegCamera]:
    with MjpegCamera(lambda n: scene(n)) as running:
        yield running


def plc_trigger(plc: Plc, name: str) -> OpcUaTrigger:
    return OpcUaTrigger(f"nsu={NAMESPACE};s={name}", OpcUaLogin(plc.url, USER, PASSWORD),
                        max_backoff_s=1.0)


def step(plc: Plc, trigger: OpcUaTrigger, name: str, value: Any) -> None:
    """Write one value and wait until the trigger has seen it: each change is its own."""
    plc.set(name, value)
    wait_for(lambda: trigger.value == value, 30)


def request_frames(endpoint: str, line: str, station: str, n: int) -> list[int]:
    """Call Stations/<station>/RequestFrame() `n` times, as a PLC would; its answers."""
    async def run() -> list[int]:
        c = Client(endpoint, timeout=30)
        c.set_user(SERVER_USER)
        c.set_password(SERVER_PASSWORD)
        async with c:
            ns = await c.get_namespace_index(f"urn:inspector:{line}")
            obj = c.get_node(f"ns={ns};s=Stations/{station}")
            return [int(await obj.call_method(f"{ns}:RequestFrame")) for _ in range(n)]

    return asyncio.run(run())


def test_request_frame_on_inspectors_server_takes_one_frame_per_call(
        opc_live: tuple[Live, str], camera: MjpegCamera) -> None:
    live, endpoint = opc_live
    trigger = make_trigger(
        f"opcua:nsu=urn:inspector:{live.line};s=Stations/s1/FrameRequests",
        TriggerOptions(opcua_url=endpoint, opcua_user=SERVER_USER,
                       opcua_password=SERVER_PASSWORD, max_backoff_s=1.0))
    assert isinstance(trigger, OpcUaTrigger)
    a = adapter(live, SourceSpec(url=camera.url), trigger, station="s1",
                part_id="{station}-r{seq}")
    assert request_frames(endpoint, live.line, "s1", 1) == [1]  # before: no frame for it
    with Running(a.run):
        wait_for(trigger.subscribed.is_set, 30)
        assert request_frames(endpoint, live.line, "s1", 3) == [2, 3, 4]
        wait_for(lambda: a.counters.posted >= 3 and not trigger.pending, 30)
    assert a.counters.triggered == 3 and balanced(a)
    assert sorted(str(r["part_id"]) for r in records(live, "s1")) == ["s1-r1", "s1-r2",
                                                                      "s1-r3"]


def test_part_present_edges_take_one_frame_each(live: Live, plc: Plc,
                                                camera: MjpegCamera) -> None:
    trigger = plc_trigger(plc, "PartPresent")
    a = adapter(live, SourceSpec(url=camera.url), trigger)
    with Running(a.run):
        wait_for(trigger.subscribed.is_set, 30)
        step(plc, trigger, "PartPresent", False)  # where it starts: the subscription's first
        for value in (True, False, True):
            step(plc, trigger, "PartPresent", value)
        wait_for(lambda: a.counters.posted == 2, 30)
        step(plc, trigger, "PartPresent", False)
    assert a.counters.triggered == 2 and balanced(a)
    assert len(records(live, a.config.station)) == 2


def test_counter_rises_and_part_ids(live: Live, plc: Plc, camera: MjpegCamera) -> None:
    """A counter that jumps by 3 takes 3 frames; a reset to 0 none. A String names the part:
    "" takes no frame, one the server would refuse gets a made-up id."""
    count, part = plc_trigger(plc, "PartCount"), plc_trigger(plc, "PartId")
    counted = adapter(live, SourceSpec(url=camera.url), count, part_id="{station}-c{seq}")
    named = adapter(live, SourceSpec(url=camera.url), part, part_id="made-up-{seq}")
    with Running(counted.run), Running(named.run):
        wait_for(lambda: count.subscribed.is_set() and part.subscribed.is_set(), 30)
        for value in (3, 4, 0, 1):
            step(plc, count, "PartCount", value)
        for value in ("A17", "", "B-22", "x\x01y"):
            step(plc, part, "PartId", value)
        wait_for(lambda: counted.counters.posted == 5 and named.counters.posted == 3, 30)
    assert counted.counters.triggered == 5 and named.counters.triggered == 3
    assert len(records(live, counted.config.station)) == 5
    assert sorted(str(r["part_id"]) for r in records(live, named.config.station)) == [
        "A17", "B-22", "made-up-3"]


def test_reconnects_after_the_plc_restarts(live: Live, camera: MjpegCamera,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Logged once per outage; the value the new subscription starts with (True, where it
    was False before the outage) takes no frame, the next edge does."""
    caplog.set_level(logging.INFO, logger=LOG)
    plc = Plc().start()
    trigger = plc_trigger(plc, "PartPresent")
    a = adapter(live, SourceSpec(url=camera.url), trigger)
    try:
        with Running(a.run):
            wait_for(trigger.subscribed.is_set, 30)
            step(plc, trigger, "PartPresent", True)
            step(plc, trigger, "PartPresent", False)
            plc.stop()
            wait_for(lambda: not trigger.subscribed.is_set(), 30)
            plc.initial["PartPresent"] = True
            plc.start()
            wait_for(trigger.subscribed.is_set, 60)
            step(plc, trigger, "PartPresent", False)
            step(plc, trigger, "PartPresent", True)
            wait_for(lambda: a.counters.posted == 2, 30)
    finally:
        plc.stop()
    assert a.counters.triggered == 2 and balanced(a)
    messages = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert sum("retrying" in m for m in messages) == 1, messages
    assert sum("connected again" in m for m in messages) == 1, messages


def test_unreachable_at_start_is_retried_until_it_answers(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    port = free_port()
    trigger = OpcUaTrigger(f"nsu={NAMESPACE};s=PartPresent",
                           OpcUaLogin(f"opc.tcp://127.0.0.1:{port}/plc", USER, PASSWORD),
                           max_backoff_s=1.0)
    stop = threading.Event()
    trigger.start(stop, Counters())
    try:
        wait_for(lambda: any("retrying" in r.getMessage() for r in caplog.records), 30)
        with Plc(port=port) as plc:
            wait_for(trigger.subscribed.is_set, 60)
            step(plc, trigger, "PartPresent", True)
            # counted while the PLC still runs: its stop at the end is an outage of its own
            retries = [r.getMessage() for r in caplog.records
                       if r.name == LOG and "retrying" in r.getMessage()]
    finally:
        trigger.close()
    assert len(trigger.pending) == 1 and trigger.error is None and not stop.is_set()
    assert len(retries) == 1, retries


# -- the command line's refusals ------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--trigger", "opcua:ns=2;x=1", "--opcua-url", "opc.tcp://h:4840"],
     "error: opcua:'ns=2;x=1' is no node id"),
    (["--trigger", "opcua:ns=2;i=abc", "--opcua-url", "opc.tcp://h:4840"],
     "error: opcua:'ns=2;i=abc': the identifier after i= is not valid"),
    (["--trigger", "opcua:ns=2;s=PartPresent"], "error: opcua:ns=2;s=PartPresent needs the "
                                                "server: --opcua-url"),
    (["--trigger", "opcua:i=2258", "--opcua-url", "http://plc:4840"],
     "error: --opcua-url must look like opc.tcp://host:4840/path"),
    (["--trigger", "opcua:i=2258", "--opcua-url", "opc.tcp://u:s3cret@plc:4840"],
     "error: --opcua-url must look like opc.tcp://host:4840/path"),
    (["--trigger", "opcua:i=2258", "--opcua-url", "opc.tcp://plc:4840", "--opcua-user", "cam"],
     "error: --opcua-user 'cam' needs a password: set INSPECTOR_OPCUA_PASSWORD"),
])
def test_cli_refuses_bad_opcua_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    env = base_env(tmp_path, INSPECTOR_CAMERA_KEY="k")
    out = run_cli(["connect", "stream", "--station", "s1", "--device", "0", *args], env,
                  check=False)
    assert out.returncode == 2 and out.stderr.startswith(message), out.stderr
    assert "Traceback" not in out.stderr and "s3cret" not in out.stderr


def test_cli_without_asyncua_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['asyncua'] = None; "  # as if it were not installed
            "from inspector.cli import main; main()")
    out = subprocess.run([sys.executable, "-c", code, "connect", "stream", "--station", "s1",
                          "--device", "0", "--trigger", "opcua:i=2258", "--opcua-url",
                          "opc.tcp://plc:4840"], env=base_env(tmp_path, INSPECTOR_CAMERA_KEY="k"),
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("error: the opcua trigger needs the OPC UA library (asyncua): "
                                  "pip install 'inspector[opcua]'")


@pytest.mark.parametrize(("node", "password", "message"), [
    ("PartPresent", "wrong-password-1", "login as camera refused"),
    ("NoSuchNode", PASSWORD, "no variable 'nsu=urn:test:plc;s=NoSuchNode' to watch"),
    ("Temperature", PASSWORD, "is a Double: the opcua trigger watches a Boolean, an integer"),
])
def test_cli_stops_when_the_plc_refuses_the_setup(tmp_path: Path, plc: Plc, camera: MjpegCamera,
                                                  node: str, password: str,
                                                  message: str) -> None:
    """Refused at the first contact: exit 2 with what to fix; the password is never shown."""
    env = base_env(tmp_path, INSPECTOR_CAMERA_KEY="k", INSPECTOR_OPCUA_PASSWORD=password)
    out = run_cli(["connect", "stream", "--station", "s1", "--url", camera.url, "--server",
                   "http://127.0.0.1:9", "--trigger", f"opcua:nsu={NAMESPACE};s={node}",
                   "--opcua-url", plc.url, "--opcua-user", USER], env, check=False)
    error = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert out.returncode == 2 and len(error) == 1, out.stderr
    assert error[0].startswith(f"error: OPC UA {plc.url}: ") and message in error[0], error
    assert password not in out.stderr and "Traceback" not in out.stderr


def test_node_ids_and_changes() -> None:
    spec = parse_node("nsu=urn:inspector:line1;s=Stations/s1/FrameRequests")
    assert spec.namespace == "urn:inspector:line1"
    assert spec.node.Identifier == "Stations/s1/FrameRequests"
    assert parse_node("ns=3;i=1001").namespace == 3 and parse_node("i=2258").node.Identifier == 2258
    assert parse_node('ns=3;s="DB_Line"."PartPresent"').node.Identifier == (
        '"DB_Line"."PartPresent"')
    for bad in ("", "ns=2", "ns=2;", "s=", "ns=70000;i=1", "ns=2;i=4294967296", "ns=2;i=-1",
                "ns=2;g=not-a-guid", "nsu=;s=a", "ns=2;s=a\x00b", "x=1"):
        with pytest.raises(ValueError, match="opcua:"):
            parse_node(bad)
    boolean, count, text = ua.VariantType.Boolean, ua.VariantType.UInt64, ua.VariantType.String
    assert [frames_for(boolean, b, n)[0] for b, n in
            ((False, True), (True, False), (True, True), (False, False))] == [1, 0, 0, 0]
    assert [frames_for(count, b, n)[0] for b, n in ((0, 1), (1, 5), (5, 0), (5, 2), (7, 7))] == [
        1, 4, 0, 2, 0]
    assert frames_for(text, "A1", " A2 ") == (1, "A2")
    assert frames_for(text, "A1", "") == (0, None) and frames_for(text, "A1", "A1")[0] == 0
    assert frames_for(text, "A1", "x" * 129) == (1, None)
    assert "s3cret" not in repr(OpcUaLogin("opc.tcp://h:4840", "u", "s3cret-password"))
