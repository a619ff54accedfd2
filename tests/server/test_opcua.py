"""The OPC UA server inside a real `inspector serve`: a real asyncua client logs in, subscribes
to a station's variables and sees every committed verdict in commit order; logins without a
user or with a wrong password are refused; a station first seen after start gets its nodes;
a client that dies mid-session does not stop the verdicts."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.model_factory import make_package
from tests.server.conftest import defect_frame, good_frame
from tests.server.harness import REPO, ServerProcess, base_env, create_key, free_port

asyncua = pytest.importorskip("asyncua", reason="the OPC UA tests need the [opcua] extra")
from asyncua import Client, Node, ua  # noqa: E402

pytestmark = pytest.mark.slow

USER, PASSWORD = "plc", "plc-password-1"
#: Generous bound on waiting for a notification; a missing one fails the test, never a slow one.
WAIT_S = 60.0


@dataclass
class OpcLive:
    url: str
    endpoint: str
    line: str
    camera: dict[str, str]
    reviewer: dict[str, str]
    process: ServerProcess


@pytest.fixture(scope="module")
def opc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpcLive]:
    root = tmp_path_factory.mktemp("opcua")
    make_package(root / "models")
    line = f"t{uuid.uuid4().hex[:10]}"
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/inspector"
    env = base_env(root / "data", INSPECTOR_LINE=line, INSPECTOR_NODE_ID=f"node-{line}",
                   INSPECTOR_SAMPLE_PASSES="0", INSPECTOR_STATIONS='{"s1": "tiny:1"}',
                   INSPECTOR_DEFAULT_MODEL="tiny:1", INSPECTOR_OPCUA_ENDPOINT=endpoint,
                   INSPECTOR_OPCUA_USERS=json.dumps({USER: PASSWORD}))
    keys = {role: create_key(env, role) for role in ("camera", "reviewer")}
    server = ServerProcess(env, root / "models", root / "server.log").start()
    try:
        yield OpcLive(server.url, endpoint, line,
                      {"Authorization": f"Bearer {keys['camera']}"},
                      {"Authorization": f"Bearer {keys['reviewer']}"}, server)
    finally:
        server.stop()


def client(opc: OpcLive, user: str | None = USER, password: str = PASSWORD) -> Client:
    c = Client(opc.endpoint, timeout=30)
    if user is not None:
        c.set_user(user)
        c.set_password(password)
    return c


async def station_node(c: Client, opc: OpcLive, station: str, name: str) -> Node:
    ns = await c.get_namespace_index(f"urn:inspector:{opc.line}")
    return c.get_node(f"ns={ns};s=Stations/{station}/{name}")


async def post(http: httpx.AsyncClient, opc: OpcLive, station: str, frame: bytes) -> Any:
    r = await http.post(f"{opc.url}/v1/inspect", params={"station": station}, content=frame,
                        headers={"Content-Type": "image/jpeg", **opc.camera}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


class Recorder:
    """Every value each subscribed variable reported, in arrival order."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Any]] = {}

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.seen.setdefault(str(node.nodeid.Identifier).rsplit("/", 1)[1], []).append(val)


async def wait_for(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"never saw {what}"
        await asyncio.sleep(0.05)


def test_subscriber_sees_every_verdict_in_commit_order(opc: OpcLive) -> None:
    names = ["LastInspectionId", "LastVerdict", "PassCount", "FailCount"]

    async def run() -> tuple[list[Any], Recorder, dict[str, Any]]:
        recorder = Recorder()
        async with client(opc) as c, httpx.AsyncClient() as http:
            nodes = [await station_node(c, opc, "s1", n) for n in names]
            sub = await c.create_subscription(10, recorder)
            await sub.subscribe_data_change(nodes, queuesize=1000)
            await wait_for(lambda: len(recorder.seen) == len(names), "the initial values")
            answers = []
            for i in range(100):  # one after another: the commit order is the posting order
                frame = defect_frame(i) if i % 3 == 0 else good_frame(i)
                answers.append(await post(http, opc, "s1", frame))
            last = answers[-1]["id"]
            await wait_for(lambda: recorder.seen["LastInspectionId"][-1] == last, "the last id")
            final = {n: await (await station_node(c, opc, "s1", n)).read_value()
                     for n in [*names, "LastPartId", "Model", "Threshold", "LastScore"]}
        return answers, recorder, final

    answers, recorder, final = asyncio.run(run())
    ids = [a["id"] for a in answers]
    assert [v for v in recorder.seen["LastInspectionId"] if v] == ids
    records = httpx.get(f"{opc.url}/v1/inspections", params={"station": "s1", "limit": 500},
                        headers=opc.reviewer).json()["items"]
    assert {r["id"] for r in records} == set(ids)
    passes = sum(r["verdict"] == "pass" for r in records)
    fails = sum(r["verdict"] == "fail" for r in records)
    assert passes == 66 and fails == 34  # the frames' own mix, as the records say
    assert final["PassCount"] == passes and final["FailCount"] == fails
    assert recorder.seen["PassCount"][-1] == passes and recorder.seen["FailCount"][-1] == fails
    assert final["LastVerdict"] == answers[-1]["verdict"]
    assert final["Model"] == "tiny:1" and final["Threshold"] == 0.5
    assert final["LastScore"] == pytest.approx(answers[-1]["score"])


def test_logins_without_a_valid_user_are_refused(opc: OpcLive) -> None:
    async def attempt(user: str | None, password: str) -> None:
        async with client(opc, user, password) as c:
            await (await station_node(c, opc, "s1", "PassCount")).read_value()

    with pytest.raises(ua.UaStatusCodeError) as anonymous:
        asyncio.run(attempt(None, ""))
    assert anonymous.value.code in (ua.StatusCodes.BadIdentityTokenRejected,
                                    ua.StatusCodes.BadUserAccessDenied)
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        asyncio.run(attempt(USER, "wrong-password"))
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        asyncio.run(attempt("intruder", PASSWORD))
    assert asyncio.run(attempt(USER, PASSWORD)) is None  # the right one still logs in


def test_variables_are_read_only_for_clients(opc: OpcLive) -> None:
    async def run() -> None:
        async with client(opc) as c:
            node = await station_node(c, opc, "s1", "LastVerdict")
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await node.write_value(ua.Variant("pass", ua.VariantType.String))
            assert refused.value.code in (ua.StatusCodes.BadNotWritable,
                                          ua.StatusCodes.BadUserAccessDenied)

    asyncio.run(run())


def test_station_first_seen_after_start_gets_its_nodes(opc: OpcLive) -> None:
    station = f"late-{uuid.uuid4().hex[:6]}"

    async def run() -> tuple[Any, Any, Any, int]:
        async with client(opc) as c, httpx.AsyncClient() as http:
            before = await station_node(c, opc, station, "LastVerdict")
            with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
                await before.read_value()
            answer = await post(http, opc, station, defect_frame(7))
            last_id = await station_node(c, opc, station, "LastInspectionId")

            async def shown() -> bool:
                try:
                    return bool(await last_id.read_value() == answer["id"])
                except ua.uaerrors.BadNodeIdUnknown:
                    return False

            deadline = asyncio.get_running_loop().time() + WAIT_S
            while not await shown():
                assert asyncio.get_running_loop().time() < deadline, "no nodes for " + station
                await asyncio.sleep(0.05)
            verdict_node = await station_node(c, opc, station, "LastVerdict")
            verdict = await verdict_node.read_value()
            assert "pass" in (await verdict_node.read_description()).Text
            fails = await (await station_node(c, opc, station, "FailCount")).read_value()
            requests = await c.get_node(
                (await station_node(c, opc, station, "FrameRequests")).nodeid).read_value()
            ns = await c.get_namespace_index(f"urn:inspector:{opc.line}")
            called = await c.get_node(f"ns={ns};s=Stations/{station}").call_method(
                f"{ns}:RequestFrame")
            after = await (await station_node(c, opc, station, "FrameRequests")).read_value()
            return answer, verdict, (fails, requests, after), called

    answer, verdict, (fails, requests, after), called = asyncio.run(run())
    assert answer["verdict"] == "fail" and verdict == "fail" and fails == 1
    assert requests == 0 and called == 1 and after == 1


_DOOMED_CLIENT = textwrap.dedent("""
    import asyncio, sys
    from asyncua import Client

    async def main():
        c = Client(sys.argv[1], timeout=30)
        c.set_user(sys.argv[2]); c.set_password(sys.argv[3])
        await c.connect()
        ns = await c.get_namespace_index(sys.argv[4])
        node = c.get_node(f"ns={ns};s={sys.argv[5]}")
        sub = await c.create_subscription(10, None)
        await sub.subscribe_data_change([node], queuesize=1000)
        print("subscribed", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


def test_verdicts_go_on_while_clients_die_mid_session(opc: OpcLive, tmp_path: Path) -> None:
    """A subscribed client killed with SIGKILL (no goodbye), and a raw connection that sends
    garbage and vanishes: every frame still gets its verdict, and a fresh client reads the
    last one."""
    station = "s-drop"
    host, port = "127.0.0.1", int(opc.endpoint.rsplit(":", 1)[1].split("/")[0])
    path = f"Stations/{station}/LastInspectionId"

    async def run() -> tuple[list[str], Any, Any]:
        async with httpx.AsyncClient() as http:
            ids = [(await post(http, opc, station, good_frame(0)))["id"]]  # creates its nodes
            doomed = subprocess.Popen([sys.executable, "-c", _DOOMED_CLIENT, opc.endpoint,
                                       USER, PASSWORD, f"urn:inspector:{opc.line}", path],
                                      cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
            try:
                line = await asyncio.to_thread(doomed.stdout.readline)  # type: ignore[union-attr]
                assert line.startswith(b"subscribed"), line
                for i in range(10):
                    ids.append((await post(http, opc, station, good_frame(i)))["id"])
            finally:
                doomed.kill()
                doomed.wait()
            with socket.create_connection((host, port)) as raw:
                raw.sendall(b"HELF\xff\xff\xff\x7f" + b"\x00" * 64)  # a broken Hello
            for i in range(10):
                ids.append((await post(http, opc, station, defect_frame(i)))["id"])
        async with client(opc) as c:
            last = await station_node(c, opc, station, "LastInspectionId")
            await wait_for_value(last, ids[-1])
            fails = await (await station_node(c, opc, station, "FailCount")).read_value()
            passes = await (await station_node(c, opc, station, "PassCount")).read_value()
        return ids, fails, passes

    ids, fails, passes = asyncio.run(run())
    assert len(set(ids)) == 21
    assert (passes, fails) == (11, 10)
    assert opc.process.proc is not None and opc.process.proc.poll() is None


async def wait_for_value(node: Node, expected: Any) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while await node.read_value() != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{node} never became {expected}"
        await asyncio.sleep(0.05)


def test_encrypted_endpoint_with_a_certificate(tmp_path: Path) -> None:
    """With a certificate and key the endpoint offers Basic256Sha256 Sign & Encrypt only: an
    encrypting client with the right password reads verdicts; a plain client finds no way in."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    from cryptography.x509.oid import ExtendedKeyUsageOID

    line, node = "enc", "node-enc"

    async def certificates() -> None:
        for who, uri, use in (("server", f"urn:inspector:{line}:{node}",
                               ExtendedKeyUsageOID.SERVER_AUTH),
                              ("client", "urn:test:client", ExtendedKeyUsageOID.CLIENT_AUTH)):
            await setup_self_signed_certificate(tmp_path / f"{who}-key.pem",
                                                tmp_path / f"{who}-cert.der", uri, "localhost",
                                                [use], {"commonName": who})

    asyncio.run(certificates())
    make_package(tmp_path / "models")
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/inspector"
    env = base_env(tmp_path / "data", INSPECTOR_AUTH_ENABLED="false", INSPECTOR_LINE=line,
                   INSPECTOR_NODE_ID=node, INSPECTOR_OPCUA_ENDPOINT=endpoint,
                   INSPECTOR_OPCUA_USERS=json.dumps({USER: PASSWORD}),
                   INSPECTOR_OPCUA_CERTIFICATE=str(tmp_path / "server-cert.der"),
                   INSPECTOR_OPCUA_PRIVATE_KEY=str(tmp_path / "server-key.pem"))

    async def read(server: ServerProcess, encrypted: bool) -> Any:
        c = Client(endpoint, timeout=30)
        c.set_user(USER)
        c.set_password(PASSWORD)
        if encrypted:
            await c.set_security(SecurityPolicyBasic256Sha256, str(tmp_path / "client-cert.der"),
                                 str(tmp_path / "client-key.pem"),
                                 mode=ua.MessageSecurityMode.SignAndEncrypt)
        async with c, httpx.AsyncClient() as http:
            r = await http.post(f"{server.url}/v1/inspect", params={"station": "s1"},
                                content=good_frame(), headers={"Content-Type": "image/jpeg"})
            assert r.status_code == 200, r.text
            ns = await c.get_namespace_index(f"urn:inspector:{line}")
            node_ = c.get_node(f"ns={ns};s=Stations/s1/LastInspectionId")
            await wait_for_value(node_, r.json()["id"])
            return r.json()["id"]

    with ServerProcess(env, tmp_path / "models", tmp_path / "server.log") as server:
        assert asyncio.run(read(server, encrypted=True))
        offered = asyncio.run(Client(endpoint).connect_and_get_server_endpoints())
        assert {(e.SecurityPolicyUri, e.SecurityMode) for e in offered} == {
            (SecurityPolicyBasic256Sha256.URI, ua.MessageSecurityMode.SignAndEncrypt)}
        with pytest.raises(ua.UaError, match="No matching endpoints"):
            asyncio.run(read(server, encrypted=False))
        assert "Basic256Sha256 Sign & Encrypt" in server.log()

