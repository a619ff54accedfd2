"""Signing out ends the session on the server: a copy of the old cookie no longer opens pages,
images or the review form. Review text with control characters is refused with a message.
Over real HTTP against `inspector serve`, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.server.conftest import Live
from tests.ui.conftest import form_token, post_frame, sign_in

pytestmark = pytest.mark.slow


def review_state(live: Live, inspection_id: object) -> str:
    r = httpx.get(f"{live.url}/v1/inspections/{inspection_id}", headers=live.auth("reviewer"),
                  timeout=30)
    assert r.status_code == 200, r.text
    state: str = r.json()["review_state"]
    return state


def with_cookie(live: Live, value: str) -> httpx.Client:
    client = httpx.Client(base_url=live.url, timeout=30)
    client.cookies.set("insp_session", value)
    return client


def test_old_cookie_is_refused_after_sign_out(ui_live: Live) -> None:
    station = f"out-{uuid.uuid4().hex[:6]}"
    fail = post_frame(ui_live, station, "S-1", defect=True)
    part_url = f"/ui/parts/{fail['id']}"
    client = sign_in(ui_live)
    other = sign_in(ui_live)  # a second sign-in with the same key, e.g. another tab or PC
    part = client.get(part_url)
    assert part.status_code == 200
    token = form_token(part.text)
    cookie = client.cookies["insp_session"]
    replay = with_cookie(ui_live, cookie)
    assert replay.get("/ui/").status_code == 200  # the copy works while signed in
    assert replay.get(f"{part_url}/image").status_code == 200

    out = client.post("/ui/logout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"

    page = replay.get("/ui/")
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")
    page = replay.get(part_url)
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")
    assert replay.get(f"{part_url}/image").status_code == 401
    assert replay.get(f"{part_url}/heatmap").status_code == 401
    posted = replay.post(f"{part_url}/review", data={"csrf": token, "decision": "good"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/ui/login")
    assert review_state(ui_live, fail["id"]) == "unreviewed"
    # Signing out again with the old cookie changes nothing and is not an error.
    assert replay.post("/ui/logout", data={"csrf": token}).status_code == 303

    # Only that session ended: the other sign-in with the same key still works, and the key
    # can sign in afresh.
    assert other.get("/ui/").status_code == 200
    again = sign_in(ui_live)
    assert again.get(part_url).status_code == 200


def test_control_characters_in_review_text_are_refused(ui_live: Live) -> None:
    station = f"txt-{uuid.uuid4().hex[:6]}"
    fail = post_frame(ui_live, station, "T-1", defect=True)
    client = sign_in(ui_live)
    url = f"/ui/parts/{fail['id']}"
    token = form_token(client.get(url).text)
    for data, field in (({"decision": "good", "note": "bad\x00note"}, "note"),
                        ({"decision": "defect", "new_type": "scratch\x00"}, "new defect type"),
                        ({"decision": "defect", "defect_type": "dent\x1b"}, "defect type")):
        r = client.post(f"{url}/review", data={"csrf": token, **data})
        assert r.status_code == 422, r.text
        assert 'data-testid="part-error"' in r.text
        assert f"{field} holds the control character" in r.text
    assert review_state(ui_live, fail["id"]) == "unreviewed"

    # Line breaks are fine in a note.
    r = client.post(f"{url}/review", data={"csrf": token, "decision": "good",
                                           "note": "checked twice\nfine"})
    assert r.status_code == 303
    assert review_state(ui_live, fail["id"]) != "unreviewed"
