"""API edges against a real server (SQLite, and PostgreSQL where reachable): integers past
what a database column holds, control characters in stored text, station-scoped camera keys
made with the real CLI, the OpenAPI document, and /readyz keeping paths to itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from inspector.app import create_app
from inspector.settings import Settings
from tests.model_factory import make_package
from tests.server.conftest import Live, good_frame
from tests.server.harness import run_cli
from tests.ui.conftest import form_token

pytestmark = pytest.mark.slow

TOO_BIG = str(2**63)  # one past the largest BIGINT
HUGE = "99999999999999999999"


def post_frame(live: Live, station: str, key: str | None = None) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else live.auth("camera")
    return httpx.post(f"{live.url}/v1/inspect", content=good_frame(5),
                      params={"station": station, "part_id": "edge"},
                      headers={"Content-Type": "image/jpeg", **auth}, timeout=30)


def assert_error(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    err: dict[str, str] = r.json()["error"]
    assert err["status"] == status and err["message"] and err["hint"]
    return err


def test_integers_past_a_bigint_are_422_not_500(live: Live) -> None:
    reader = live.auth("reviewer")
    r = httpx.get(f"{live.url}/v1/reviews", params={"before": TOO_BIG}, headers=reader)
    err = assert_error(r, 422)
    assert "before" in err["message"]
    ok = httpx.get(f"{live.url}/v1/reviews", params={"before": str(2**63 - 1)}, headers=reader)
    assert ok.status_code == 200, ok.text
    for params in ({"limit": HUGE}, {"before": HUGE}):
        assert_error(httpx.get(f"{live.url}/v1/inspections", params=params, headers=reader), 422)
    ui = httpx.Client(base_url=live.url, timeout=30)
    page = ui.get("/ui/login")
    signed = ui.post("/ui/login", data={"key": live.keys["reviewer"],
                                        "csrf": form_token(page.text), "next": "/ui/"})
    assert signed.status_code == 303, signed.text
    for page_no in (HUGE, TOO_BIG, "1000001", "-5"):
        r = ui.get("/ui/", params={"page": page_no})
        assert r.status_code in (200, 422), (page_no, r.status_code, r.text[:300])
    ui.close()


def test_nul_in_a_review_note_is_422_and_the_server_keeps_serving(live: Live) -> None:
    made = post_frame(live, "s1")
    assert made.status_code == 200, made.text
    url = f"{live.url}/v1/inspections/{made.json()['id']}/review"
    reviewer = live.auth("reviewer")
    for body in ({"label": "good", "note": "looks\x00fine"},
                 {"label": "good", "note": "bell\x07"},
                 {"label": "defect", "defect_type": "scratch", "note": "x" * 2001}):
        err = assert_error(httpx.post(url, json=body, headers=reviewer, timeout=30), 422)
        assert "note" in err["message"]
    assert "U+0000" in assert_error(
        httpx.post(url, json={"label": "good", "note": "a\x00"}, headers=reviewer), 422,
    )["message"]
    ok = httpx.post(url, json={"label": "defect", "defect_type": "scratch",
                               "note": "two lines\n\tand a tab"}, headers=reviewer, timeout=30)
    assert ok.status_code == 201, ok.text
    assert ok.json()["note"] == "two lines\n\tand a tab"
    deploy = httpx.put(f"{live.url}/v1/stations/s1/model", json={"model": "tiny\x00:1"},
                       headers=live.auth("admin"), timeout=30)
    assert_error(deploy, 422)
    assert post_frame(live, "s1").status_code == 200  # still serving


def test_station_scoped_camera_keys(live: Live) -> None:
    env = live.process.env
    made = run_cli(["keys", "create", "--role", "camera", "--name", "cam-press",
                    "--station", "press-1", "--station", "press-2"], env)
    scoped = made.stdout.strip().splitlines()[-1]
    assert "press-1, press-2" in made.stderr
    listed = run_cli(["keys", "list"], {**env, "COLUMNS": "200"}).stdout
    assert any("cam-press" in line and "press-1,press-2" in line for line in listed.splitlines())
    bad = run_cli(["keys", "create", "--role", "camera", "--station", "press/1"], env,
                  check=False)
    assert bad.returncode == 2 and "must match" in bad.stderr
    not_camera = run_cli(["keys", "create", "--role", "reviewer", "--station", "press-1"],
                         env, check=False)
    assert not_camera.returncode == 2 and "camera keys only" in not_camera.stderr

    assert post_frame(live, "press-1", scoped).status_code == 200
    assert post_frame(live, "press-2", scoped).status_code == 200
    err = assert_error(post_frame(live, "press-3", scoped), 403)
    assert "press-1, press-2" in err["message"] and "--station press-3" in err["hint"]
    assert post_frame(live, "press-3").status_code == 200  # an unscoped key: any station
    missing = httpx.post(f"{live.url}/v1/inspect", content=good_frame(5), timeout=30,
                         headers={"Content-Type": "image/jpeg",
                                  "Authorization": f"Bearer {scoped}"})
    assert_error(missing, 422)  # no station at all: the usual validation answer


def test_openapi_declares_bodies_and_404_409(live: Live) -> None:
    doc = httpx.get(f"{live.url}/openapi.json", timeout=30).json()
    paths = doc["paths"]
    upload = paths["/v1/models"]["post"]
    content = upload["requestBody"]["content"]
    assert upload["requestBody"]["required"] is True
    assert {"application/gzip", "application/zip", "application/x-tar",
            "multipart/form-data"} <= set(content)
    assert content["application/gzip"]["schema"]["format"] == "binary"
    assert "409" in upload["responses"]
    review = paths["/v1/inspections/{inspection_id}/review"]["post"]
    assert "requestBody" in review and "404" in review["responses"]
    expected = {
        ("/v1/inspections/{inspection_id}", "get"): {"404"},
        ("/v1/inspections/{inspection_id}/image", "get"): {"404"},
        ("/v1/inspections/{inspection_id}/heatmap", "get"): {"404"},
        ("/v1/stations/{station}/model", "put"): {"404", "409"},
        ("/v1/stations/{station}/promote", "post"): {"404", "409"},
        ("/v1/stations/{station}/rollback", "post"): {"404", "409"},
        ("/v1/stations/{station}/shadow", "delete"): {"409"},
        ("/v1/stations/{station}/shadow-report", "get"): {"404"},
    }
    for (path, method), codes in expected.items():
        responses = paths[path][method]["responses"]
        assert codes <= set(responses), (path, method, sorted(responses))
        for code in codes:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody")
    assert "ErrorBody" in doc["components"]["schemas"]


def test_readyz_shows_refused_models_without_paths(tmp_path: Path) -> None:
    models = tmp_path / "models"
    good = make_package(models)
    broken = models / "tiny" / "2"
    shutil.copytree(good, broken)
    (broken / "model.onnx").unlink()
    settings = Settings(models_dir=models, data_dir=tmp_path / "data", providers="cpu",
                        work_threads=1)
    with TestClient(create_app(settings)) as client:
        r = client.get("/readyz")
    assert r.status_code == 200, r.text
    refused = r.json()["refused"]
    assert list(refused) == ["tiny:2"]
    assert "model.onnx" in refused["tiny:2"]
    assert str(tmp_path) not in r.text and "/tmp" not in r.text
