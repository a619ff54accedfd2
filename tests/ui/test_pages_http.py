"""The review pages and GET /v1/reviews over real HTTP (no browser): sign-in rules, CSRF,
sessions, review by form, station figures, the reviews API. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.server.conftest import Live
from tests.server.harness import run_cli
from tests.ui.conftest import api_review, form_token, metric, post_frame, sign_in

pytestmark = pytest.mark.slow


def station_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_camera_key_cannot_sign_in(ui_live: Live) -> None:
    client = httpx.Client(base_url=ui_live.url, timeout=30)
    page = client.get("/ui/login")
    assert page.status_code == 200 and "Reviewer API key" in page.text
    r = client.post("/ui/login", data={"key": ui_live.keys["camera"],
                                       "csrf": form_token(page.text)})
    assert r.status_code == 403
    assert "camera key cannot sign in" in r.text
    assert "insp_session" not in r.headers.get("set-cookie", "")
    assert client.get("/ui/").status_code == 303  # still signed out

    page = client.get("/ui/login")
    r = client.post("/ui/login", data={"key": "insp_nope_nope", "csrf": form_token(page.text)})
    assert r.status_code == 401 and "Unknown or revoked key" in r.text


def test_session_cookie_and_sign_out(ui_live: Live) -> None:
    anonymous = httpx.get(f"{ui_live.url}/ui/stations", timeout=30)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/ui/login?next=%2Fui%2Fstations"
    assert httpx.get(f"{ui_live.url}/ui/parts/{'0' * 32}/image").status_code == 401

    client = httpx.Client(base_url=ui_live.url, timeout=30)
    page = client.get("/ui/login?next=/ui/stations")
    r = client.post("/ui/login", data={"key": ui_live.keys["admin"], "next": "/ui/stations",
                                       "csrf": form_token(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/stations"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert ui_live.keys["admin"].lower() not in cookie  # the key never travels in the cookie
    home = client.get("/ui/stations")
    assert home.status_code == 200 and "test-admin" in home.text

    forged = httpx.Client(base_url=ui_live.url, timeout=30)
    value = client.cookies["insp_session"]
    forged.cookies.set("insp_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert forged.get("/ui/").status_code == 303

    out = client.post("/ui/logout", data={"csrf": form_token(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert client.get("/ui/").status_code == 303


def test_revoked_key_signs_out(ui_live: Live) -> None:
    env = ui_live.process.env
    out = run_cli(["keys", "create", "--role", "reviewer", "--name", "temp-qa"], env)
    key = out.stdout.strip().splitlines()[-1]
    client = httpx.Client(base_url=ui_live.url, timeout=30)
    page = client.get("/ui/login")
    assert client.post("/ui/login", data={"key": key, "csrf": form_token(page.text)}
                       ).status_code == 303
    assert client.get("/ui/").status_code == 200
    run_cli(["keys", "revoke", key.split("_")[1]], env)
    assert client.get("/ui/").status_code == 303


def test_post_without_csrf_is_refused(ui_live: Live) -> None:
    station = station_name("csrf")
    fail = post_frame(ui_live, station, "C-1", defect=True)
    client = sign_in(ui_live)
    url = f"/ui/parts/{fail['id']}/review"
    for data in ({"decision": "good"}, {"decision": "good", "csrf": "not-the-token"}):
        r = client.post(url, data=data)
        assert r.status_code == 403, r.text
        assert "form expired" in r.text
    state = httpx.get(f"{ui_live.url}/v1/inspections/{fail['id']}",
                      headers=ui_live.auth("reviewer")).json()["review_state"]
    assert state == "unreviewed"

    fresh = httpx.Client(base_url=ui_live.url, timeout=30)
    fresh.get("/ui/login")
    r = fresh.post("/ui/login", data={"key": ui_live.keys["reviewer"]})  # no token
    assert r.status_code == 403 and "insp_session" not in fresh.cookies


def test_review_by_form_goes_to_next_part(ui_live: Live) -> None:
    station = station_name("form")
    older = post_frame(ui_live, station, "F-1", defect=True, seed=1)
    newer = post_frame(ui_live, station, "F-2", defect=True, seed=2)
    client = sign_in(ui_live)
    part = client.get(f"/ui/parts/{newer['id']}", params={"station": station})
    assert part.status_code == 200
    assert "tiny" in part.text and "F-2" in part.text
    assert f"/ui/parts/{newer['id']}/heatmap" in part.text
    assert client.get(f"/ui/parts/{newer['id']}/heatmap").content[:2] == b"\xff\xd8"
    token = form_token(part.text)

    bad = client.post(f"/ui/parts/{newer['id']}/review?station={station}",
                      data={"csrf": token, "decision": "defect", "new_type": "bad/type!"})
    assert bad.status_code == 400 and "not a usable defect type" in bad.text

    r = client.post(f"/ui/parts/{newer['id']}/review?station={station}",
                    data={"csrf": token, "decision": "defect", "new_type": " Scratch Mark ",
                          "note": "deep"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/ui/parts/{older['id']}?station={station}&prev={newer['id']}"
    r = client.post(f"/ui/parts/{older['id']}/review?station={station}",
                    data={"csrf": token, "decision": "good", "defect_type": "scratch_mark"})
    assert r.status_code == 303 and r.headers["location"].startswith(f"/ui/?station={station}")
    queue = client.get(r.headers["location"])
    assert "Nothing to review" in queue.text and "That was the last one" in queue.text

    rows = httpx.get(f"{ui_live.url}/v1/reviews", params={"station": station},
                     headers=ui_live.auth("reviewer")).json()["items"]
    got = {(r["part_id"], r["label"], r["defect_type"], r["note"], r["reviewer"]) for r in rows}
    assert got == {("F-2", "defect", "scratch_mark", "deep", "test-reviewer"),
                   ("F-1", "good", None, None, "test-reviewer")}


def test_station_page_numbers(ui_live: Live) -> None:
    station = station_name("num")
    fails, passes = [], []
    for i in range(10):
        body = post_frame(ui_live, station, f"N-{i}", defect=i % 5 in (1, 3), seed=i,
                          brightness=70 + 4 * i)
        (fails if body["verdict"] == "fail" else passes).append(body["id"])
    assert len(fails) == 4
    api_review(ui_live, fails[0], "good")
    api_review(ui_live, fails[1], "defect", "dent")
    api_review(ui_live, fails[2], "good")  # first an overturn, then re-reviewed as defect:
    api_review(ui_live, fails[2], "defect", "scratch")  # the latest label counts
    client = sign_in(ui_live)
    page = client.get(f"/ui/stations/{station}")
    assert page.status_code == 200
    html = page.text
    assert metric(html, "total") == "10"
    assert float(metric(html, "yield")) == pytest.approx(0.6)
    assert metric(html, "reviewed") == "3"
    assert metric(html, "overturned") == "1" and metric(html, "confirmed") == "2"
    assert float(metric(html, "overturn-rate")) == pytest.approx(1 / 3)
    assert "33.3%" in html and "60.0%" in html
    assert 'data-testid="reviewed-rates"' in html and "review some passes" in html
    assert metric(html, "line-escape") == ""  # no pass reviewed yet: no line estimate
    api_review(ui_live, passes[0], "defect", "dent")  # an escape
    api_review(ui_live, passes[1], "good")
    html = client.get(f"/ui/stations/{station}").text
    # Reviewed defects: 2 confirmed fails + 1 escape; reviewed goods: 1 overturned + 1 pass.
    assert float(metric(html, "reviewed-escape")) == pytest.approx(1 / 3)
    assert float(metric(html, "reviewed-frr")) == pytest.approx(1 / 2)
    assert "1 of 3 reviewed defects passed" in html and "1 of 2 reviewed goods failed" in html
    assert "These rest on 5 reviewed frames: 3 of 4 fails and 2 of 6 passes" in html
    # Weighted: a reviewed fail counts 4/3, a reviewed pass 3: escapes 3 vs caught 8/3,
    # false rejects 4/3 vs good passes 3.
    assert float(metric(html, "line-escape")) == pytest.approx(9 / 17)
    assert float(metric(html, "line-frr")) == pytest.approx(4 / 13)
    assert 'data-testid="drift-chart"' in html and "<svg" in html and 'class="threshold"' in html
    overview = client.get("/ui/stations").text
    assert f"/ui/stations/{station}" in overview
    empty = client.get("/ui/stations/never-seen")
    assert empty.status_code == 200 and metric(empty.text, "total") == "0"
    assert metric(empty.text, "overturn-rate") == ""
    assert "No reviewed frames at this station" in empty.text

    history = httpx.get(f"{ui_live.url}/v1/reviews", params={"station": station,
                                                             "history": "true"},
                        headers=ui_live.auth("reviewer")).json()["items"]
    assert len(history) == 6  # four on fails, two on passes


def test_reviews_api_filters_and_pages(ui_live: Live) -> None:
    station = station_name("api")
    ids = [post_frame(ui_live, station, f"A-{i}", defect=True, seed=i)["id"] for i in range(3)]
    api_review(ui_live, ids[0], "defect", "dent")
    api_review(ui_live, ids[1], "good")
    api_review(ui_live, ids[2], "defect", "scratch")

    def get(**params: object) -> httpx.Response:
        return httpx.get(f"{ui_live.url}/v1/reviews", params={"station": station, **params},
                         headers=ui_live.auth("reviewer"), timeout=30)

    page1 = get(limit=2).json()
    assert [r["inspection_id"] for r in page1["items"]] == [ids[2], ids[1]]
    page2 = get(limit=2, before=page1["next_cursor"]).json()
    assert [r["inspection_id"] for r in page2["items"]] == [ids[0]]
    assert page2["next_cursor"] is None
    row = page2["items"][0]
    assert row["model"] == {"name": "tiny", "version": "1"} and row["station"] == station
    assert row["verdict"] == "fail" and row["reviewer"] == "test-reviewer"
    assert {r["inspection_id"] for r in get(label="defect").json()["items"]} == {ids[0], ids[2]}
    assert get(since="2999-01-01T00:00:00").json()["items"] == []
    assert len(get(until="2999-01-01T00:00:00Z").json()["items"]) == 3
    assert get(label="maybe").status_code == 422
    camera = httpx.get(f"{ui_live.url}/v1/reviews", headers=ui_live.auth("camera"))
    assert camera.status_code == 403
