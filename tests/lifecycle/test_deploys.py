"""Shadow deploys, the shadow report over HTTP, promote and rollback, against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.lifecycle.conftest import RegServer, frame, wait_for
from tests.lifecycle.packing import tar_gz
from tests.model_factory import make_package

pytestmark = pytest.mark.slow

#: Blob levels -> scores of about level/255: 0.16 (no blob), 0.39, 0.55, 0.71, 0.86, 0.98.
LEVELS = [0, 100, 140, 180, 220, 250]


def report(reg: RegServer, station: str, role: str = "reviewer") -> dict[str, Any]:
    r = reg.call("GET", f"/v1/stations/{station}/shadow-report", role=role)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def test_shadow_leaves_answers_unchanged_and_the_report_adds_up(
        reg: RegServer, pkg_root: Path) -> None:
    # Same graph as tiny:1 (threshold 0.5) with threshold 0.8: identical scores, and frames
    # scoring 0.55 and 0.71 flip from fail (active) to pass (shadow).
    assert reg.upload(tar_gz(make_package(pkg_root, version="8", threshold=0.8))).status_code \
        == 201
    frames = [frame(level, seed) for seed in range(2) for level in LEVELS]
    before = [reg.inspect("s1", f).json() for f in frames]
    assert reg.deploy("s1", "tiny:8", "shadow").json() == \
        {"station": "s1", "model": "tiny:8", "mode": "shadow"}
    assert reg.call("GET", "/v1/stations/s1/model", role="reviewer").json() == \
        {"station": "s1", "active": "tiny:1", "shadow": "tiny:8", "previous": None}
    after = [reg.inspect("s1", f).json() for f in frames]
    for b, a in zip(before, after, strict=True):
        assert a["model"] == {"name": "tiny", "version": "1"}
        assert (a["verdict"], a["threshold"]) == (b["verdict"], 0.5)
        assert a["score"] == pytest.approx(b["score"])
    wait_for(lambda: report(reg, "s1")["n"] == len(frames), what="shadow results")
    rows = reg.query("SELECT inspection_id, shadow_score, active_score, shadow_verdict "
                     "FROM shadow_results")
    assert {r[0] for r in rows} == {a["id"] for a in after}
    assert all(r[1] == pytest.approx(r[2]) for r in rows)

    scores = [a["score"] for a in after]
    flips = sum(0.5 <= s < 0.8 for s in scores)
    assert flips == 4  # levels 140 and 180, two seeds
    rep = report(reg, "s1")
    assert rep["shadow_model"] == "tiny:8" and rep["active_models"] == ["tiny:1"]
    assert rep["agreement"] == pytest.approx(1 - flips / len(frames))
    assert rep["flips"] == {"pass_to_fail": 0, "fail_to_pass": flips}
    assert rep["score_correlation"]["pearson"] == pytest.approx(1.0)
    assert rep["score_correlation"]["spearman"] == pytest.approx(1.0, abs=0.02)

    # Reviews: a 0.55 frame is really good (the shadow is right), a 0.98 one a defect.
    good_id = next(a["id"] for a, lv in zip(after, LEVELS * 2, strict=True) if lv == 140)
    bad_id = next(a["id"] for a, lv in zip(after, LEVELS * 2, strict=True) if lv == 250)
    for iid, label in ((good_id, "good"), (bad_id, "defect")):
        r = reg.call("POST", f"/v1/inspections/{iid}/review", role="reviewer",
                     json={"label": label, "defect_type": "spot" if label == "defect" else None})
        assert r.status_code == 201, r.text
    reviewed = report(reg, "s1")["reviewed"]
    assert (reviewed["n"], reviewed["n_defect"], reviewed["n_good"]) == (2, 1, 1)
    assert reviewed["active"]["false_rejects"] == 1 and reviewed["active"]["accuracy"] == 0.5
    assert reviewed["shadow"]["false_rejects"] == 0 and reviewed["shadow"]["accuracy"] == 1.0
    assert reviewed["shadow"]["escapes"] == 0

    # Promote: the station answers with tiny:8, and tiny:1 is the rollback target.
    promoted = reg.call("POST", "/v1/stations/s1/promote").json()
    assert promoted == {"station": "s1", "active": "tiny:8", "shadow": None,
                        "previous": "tiny:1"}
    answer = reg.inspect("s1", frame(140)).json()
    assert answer["model"]["version"] == "8" and answer["verdict"] == "pass"
    rolled = reg.call("POST", "/v1/stations/s1/rollback").json()
    assert rolled == {"station": "s1", "active": "tiny:1", "shadow": None, "previous": "tiny:8"}
    assert reg.inspect("s1", frame(140)).json()["model"]["version"] == "1"
    history = reg.query("SELECT mode, model_version, deployed_by, retired_at IS NULL FROM "
                        "station_deployments WHERE station = 's1' ORDER BY id")
    assert history == [("shadow", "8", "test-admin", 0),
                       ("active", "1", "settings", 0),  # what answered before, from settings
                       ("active", "8", "test-admin", 0), ("active", "1", "test-admin", 1)]
    # The old report stays readable after the shadow is gone.
    assert report(reg, "s1")["n"] == len(frames)


def test_refusals(reg: RegServer) -> None:
    assert reg.call("POST", "/v1/stations/lonely/promote").status_code == 409
    assert reg.call("POST", "/v1/stations/lonely/rollback").status_code == 409
    assert reg.call("DELETE", "/v1/stations/lonely/shadow").status_code == 409
    r = reg.deploy("s2", "tiny:1", "shadow")
    assert r.status_code == 200  # s2 answers nothing yet, so tiny:1 may shadow there
    assert reg.deploy("s2", "tiny:1").status_code == 200
    assert reg.call("GET", "/v1/stations/s2/model").json()["shadow"] is None  # became active
    assert reg.deploy("s2", "tiny:1", "shadow").status_code == 409  # already active
    missing = reg.deploy("s2", "nope:3")
    assert missing.status_code == 404 and "POST /v1/models" in missing.json()["error"]["hint"]
    assert reg.deploy("s2", "tiny:1", "sideways").status_code == 422
    assert reg.call("PUT", "/v1/stations/s2/model", role="reviewer",
                    json={"model": "tiny:1"}).status_code == 403
    assert reg.call("POST", "/v1/stations/s2/promote", role="camera").status_code == 403
    assert reg.call("GET", "/v1/stations/nowhere/shadow-report").status_code == 404
    assert reg.call("GET", "/v1/stations/s1/shadow-report", role="camera").status_code == 403


def test_stop_shadow(reg: RegServer, pkg_root: Path) -> None:
    assert reg.upload(tar_gz(make_package(pkg_root, name="other"))).status_code == 201
    assert reg.deploy("s3", "tiny:1").status_code == 200
    assert reg.deploy("s3", "other:1", "shadow").status_code == 200
    reg.inspect("s3", frame(200))
    wait_for(lambda: report(reg, "s3")["n"] == 1, what="a shadow result")
    assert reg.call("DELETE", "/v1/stations/s3/shadow").json()["shadow"] is None
    reg.inspect("s3", frame(200))
    assert report(reg, "s3")["n"] == 1
    # other:1 is needed by nothing now, so it is unloaded.
    wait_for(lambda: "other:1" not in reg.loaded(), what="other:1 to unload")
    # ... and comes back from the models folder when deployed again.
    assert reg.deploy("s3", "other:1", "shadow").status_code == 200
    assert "other:1" in reg.loaded()


def test_deployments_survive_a_restart(tmp_path: Path) -> None:
    from tests.lifecycle.conftest import start_server

    root = tmp_path / "srv"
    server = start_server(root, {"s1": "tiny:1"})
    try:
        for version in ("2", "3"):
            pkg = make_package(tmp_path / "build", version=version)
            assert server.upload(tar_gz(pkg)).status_code == 201
        assert server.deploy("s1", "tiny:2", "shadow").status_code == 200
        assert server.call("POST", "/v1/stations/s1/promote").status_code == 200
        assert server.deploy("s1", "tiny:3", "shadow").status_code == 200
    finally:
        server.process.stop()
    again = start_server(root, {"s1": "tiny:1"})
    try:
        state = again.call("GET", "/v1/stations/s1/model").json()
        assert state == {"station": "s1", "active": "tiny:2", "shadow": "tiny:3",
                         "previous": "tiny:1"}
        assert again.inspect("s1", frame(120)).json()["model"]["version"] == "2"
        wait_for(lambda: again.call("GET", "/v1/stations/s1/shadow-report").json()["n"] == 1,
                 what="the restored shadow to run")
        assert again.call("POST", "/v1/stations/s1/rollback").json()["active"] == "tiny:1"
    finally:
        again.process.stop()
