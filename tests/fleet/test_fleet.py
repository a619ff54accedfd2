"""The fleet acceptance test: three real servers on one PostgreSQL database and the local
Mosquitto. A package uploaded to n1 and deployed (through n1) to station s1 runs on n2 and
n3 within seconds, with no failed frame while cameras keep posting to both; a rollback
reaches both; flagged frames of every node are reviewable and exportable from any node; a
killed node shows stale and its last will arrives on MQTT."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import httpx
import pytest

from tests.fleet.conftest import Fleet, LoadLoop, wait_for
from tests.lifecycle.conftest import frame
from tests.lifecycle.packing import tar_gz
from tests.model_factory import make_package
from tests.server.harness import run_cli
from tests.ui.conftest import form_token
from tests.ui.test_review_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt, pytest.mark.slow]

# The tests share one fleet (module fixture) and run in file order: those that need n3 alive
# come before the `killed_n3` ones.


def assert_both_answer_with(fleet: Fleet, load: LoadLoop, version: str) -> None:
    """n2 and n3 report running tiny:VERSION at s1, and every frame they answer from then on
    was judged by it."""
    wait_for(lambda: fleet.running("n2", "s1") == fleet.running("n3", "s1") == f"tiny:{version}",
             60, f"n2 and n3 to run tiny:{version}")
    mark = len(load.answers)
    wait_for(lambda: {"n2", "n3"} <= {n for n, _, _ in load.answers[mark:]}, 30,
             "frames answered by both since")
    assert load.versions_since(mark, "n2") == load.versions_since(mark, "n3") == {version}


def test_deploy_and_rollback_reach_every_serving_node_without_a_failed_frame(
        fleet: Fleet, tmp_path: Path) -> None:
    pkg = fleet.signers["qa"].sign(make_package(tmp_path / "build", version="2", threshold=0.8))
    wait_for(lambda: fleet.running("n2", "s1") == fleet.running("n3", "s1") == "tiny:1",
             60, "n2 and n3 to report s1 on tiny:1")
    with LoadLoop(fleet, ["n2", "n3"], "s1") as load:
        uploaded = fleet.call("n1", "POST", "/v1/models", content=tar_gz(pkg),
                              headers={"Content-Type": "application/gzip"})
        assert uploaded.status_code == 201, uploaded.text
        deployed = fleet.call("n1", "PUT", "/v1/stations/s1/model",
                              json={"model": "tiny:2", "mode": "active"})
        assert deployed.status_code == 200, deployed.text
        assert_both_answer_with(fleet, load, "2")
        station = fleet.call("n1", "GET", "/v1/stations/s1/model", role="reviewer").json()
        assert station == {"station": "s1", "active": "tiny:2", "shadow": None,
                           "previous": "tiny:1"}

        rolled = fleet.call("n2", "POST", "/v1/stations/s1/rollback")
        assert rolled.status_code == 200, rolled.text
        assert_both_answer_with(fleet, load, "1")
    failed = [a for a in load.answers if a[1] != 200]
    assert failed == [] and len(load.answers) > 20
    view = fleet.node_view("n3")
    assert (view["n1"]["serves"], view["n2"]["serves"]) == (["s0"], ["s1"])
    assert "tiny:2" in view["n3"]["models"]  # fetched from the package store
    assert all(not n["stale"] for n in view.values())
    assert (fleet.tmp / "n3" / "models" / "tiny" / "2" / "model.onnx").is_file()


def test_unsigned_and_untrusted_packages_are_refused_everywhere(fleet: Fleet,
                                                                tmp_path: Path) -> None:
    """require_signed on every node: an unsigned upload and one signed by a key a node does
    not trust are refused by that node; a package n1 trusts but n2 and n3 do not, deployed to
    their station through n1, is refused by both at load (they keep serving, and say why)."""
    unsigned = tar_gz(make_package(tmp_path / "u", version="3"))
    for node in fleet.nodes:
        r = fleet.call(node, "POST", "/v1/models", content=unsigned,
                       headers={"Content-Type": "application/gzip"})
        assert r.status_code == 422 and "not signed" in r.text, (node, r.text)
    vendor = fleet.signers["vendor"]
    foreign = tar_gz(vendor.sign(make_package(tmp_path / "v", version="4")))
    for node in ("n2", "n3"):
        r = fleet.call(node, "POST", "/v1/models", content=foreign,
                       headers={"Content-Type": "application/gzip"})
        assert r.status_code == 422 and vendor.key_id in r.text, (node, r.text)
    assert fleet.call("n1", "POST", "/v1/models", content=foreign,
                      headers={"Content-Type": "application/gzip"}).status_code == 201
    with LoadLoop(fleet, ["n2", "n3"], "s1") as load:
        deployed = fleet.call("n1", "PUT", "/v1/stations/s1/model",
                              json={"model": "tiny:4", "mode": "active"})
        assert deployed.status_code == 200, deployed.text

        def refused_by(node: str) -> bool:
            rows = [s for s in fleet.node_view().get(node, {}).get("stations", [])
                    if s["station"] == "s1" and s["mode"] == "active"]
            return bool(rows) and rows[0]["desired"] == "tiny:4" and not rows[0]["ok"]

        wait_for(lambda: refused_by("n2") and refused_by("n3"), 60,
                 "n2 and n3 to refuse tiny:4")
        for node in ("n2", "n3"):
            (row,) = [s for s in fleet.node_view()[node]["stations"]
                      if s["station"] == "s1" and s["mode"] == "active"]
            assert row["running"] == "tiny:1" and vendor.key_id in row["error"], row
        mark = len(load.answers)
        wait_for(lambda: {"n2", "n3"} <= {n for n, _, _ in load.answers[mark:]}, 30,
                 "frames answered by both since")
        back = fleet.call("n1", "PUT", "/v1/stations/s1/model",
                          json={"model": "tiny:1", "mode": "active"})
        assert back.status_code == 200, back.text
    assert [a for a in load.answers if a[1] != 200] == []
    assert load.versions_since(0, "n2") == load.versions_since(0, "n3") == {"1"}
    assert not (fleet.tmp / "n2" / "models" / "tiny" / "4").exists()


def test_one_review_queue_across_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    """Fails judged on n2 and n3 are listed, shown (image and heatmap), reviewed and exported
    through n1, whose disk holds none of their files."""
    judged = {}
    for node in ("n2", "n3"):
        r = fleet.call(node, "POST", "/v1/inspect", role="camera", params={"station": "s1"},
                       content=frame(250, seed=7), headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["verdict"] == "fail", r.text
        judged[node] = r.json()["id"]
    listed = fleet.call("n1", "GET", "/v1/inspections", role="reviewer",
                        params={"station": "s1", "verdict": "fail", "limit": 500}).json()
    by_id = {i["id"]: i for i in listed["items"]}
    assert set(judged.values()) <= set(by_id)
    assert {node: by_id[iid]["node"] for node, iid in judged.items()} == {"n2": "n2", "n3": "n3"}
    for node, iid in judged.items():
        for what in ("image", "heatmap"):
            own = fleet.call(node, "GET", f"/v1/inspections/{iid}/{what}", role="reviewer")
            wait_for(lambda iid=iid, what=what: fleet.call(  # type: ignore[misc]
                "n1", "GET", f"/v1/inspections/{iid}/{what}", role="reviewer"
            ).status_code == 200, 30, f"{node}'s {what} on n1")
            there = fleet.call("n1", "GET", f"/v1/inspections/{iid}/{what}", role="reviewer")
            assert there.content == own.content and there.headers["content-type"] == \
                own.headers["content-type"]
        r = fleet.call("n1", "POST", f"/v1/inspections/{iid}/review", role="reviewer",
                       json={"label": "defect", "defect_type": "spot"})
        assert r.status_code == 201, r.text
        assert fleet.call(node, "GET", f"/v1/inspections/{iid}", role="reviewer"
                          ).json()["review_state"] == "defect"
    out = tmp_path / "export"
    n1 = fleet.nodes["n1"]
    done = run_cli(["dataset", "export", "--since", "1d", "--out", str(out), "--station", "s1",
                    "--sample-passes", "0", "--json"], n1.env)
    summary = json.loads(done.stdout)
    assert summary["images"] >= 2
    exported = {p.stem for p in (out / "spot").iterdir()}
    assert all(any(iid in name for name in exported) for iid in judged.values())


def test_a_killed_node_goes_stale_and_its_last_will_arrives(killed_n3: Fleet) -> None:
    fleet = killed_n3
    assert (fleet.watcher.last(fleet.topic("n2")) or {}).get("state") == "online"
    wait_for(lambda: fleet.node_view()["n3"]["stale"], 30, "n3 to show stale")
    view = fleet.node_view()
    assert not view["n1"]["stale"] and not view["n2"]["stale"]
    wait_for(lambda: (fleet.watcher.last(fleet.topic("n3")) or {}).get("state") == "offline",
             30, "n3's last will on MQTT")
    assert fleet.watcher.last(fleet.topic("n3")) == {
        "node": "n3", "site": fleet.site, "line": fleet.line, "state": "offline"}


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                    reason="the playwright package is not installed (pip install playwright)")
def test_the_fleet_page_flags_the_stale_node(killed_n3: Fleet) -> None:
    from playwright.sync_api import expect, sync_playwright

    fleet = killed_n3
    wait_for(lambda: fleet.node_view()["n3"]["stale"], 30, "n3 to show stale")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{fleet.nodes['n1'].url}/ui/login")
            page.fill("input[name=key]", fleet.keys["reviewer"])
            page.keyboard.press("Enter")
            page.wait_for_url("**/ui/**")
            page.click("nav.mainnav >> text=Fleet")
            table = page.get_by_test_id("fleet-table")
            expect(table.locator("tr[data-node=n3]")).to_have_attribute("data-stale", "true")
            expect(table.locator("tr[data-node=n3]").get_by_test_id("stale")).to_be_visible()
            expect(table.locator("tr[data-node=n2]")).to_have_attribute("data-stale", "false")
            expect(table.locator("tr[data-node=n2]")).to_contain_text("s1")
        finally:
            browser.close()


def test_the_fleet_page_marks_the_stale_node_over_http(killed_n3: Fleet) -> None:
    fleet = killed_n3
    wait_for(lambda: fleet.node_view()["n3"]["stale"], 30, "n3 to show stale")
    with httpx.Client(base_url=fleet.nodes["n2"].url, timeout=30) as client:
        login = client.get("/ui/login")
        signed = client.post("/ui/login", data={"key": fleet.keys["reviewer"],
                                                "csrf": form_token(login.text), "next": "/ui/"})
        assert signed.status_code == 303, signed.text
        page = client.get("/ui/fleet")
    assert page.status_code == 200
    rows = dict(re.findall(r'<tr data-node="(n\d)" data-stale="(true|false)"', page.text))
    assert rows == {"n1": "false", "n2": "false", "n3": "true"}
