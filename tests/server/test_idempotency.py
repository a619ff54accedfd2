"""Idempotency-Key on POST /v1/inspect against a real server (SQLite and PostgreSQL): a resent
frame gets its recorded verdict back, never a second record or a second MQTT message."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.server.conftest import Live, defect_frame, good_frame

pytestmark = pytest.mark.slow


def post(live: Live, body: bytes, station: str, key: str | None) -> httpx.Response:
    headers = {"Content-Type": "image/jpeg", **live.auth("camera")}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{live.url}/v1/inspect", content=body, timeout=30, headers=headers,
                      params={"station": station, "part_id": "P1"})


def records(live: Live, station: str) -> list[dict[str, object]]:
    r = httpx.get(f"{live.url}/v1/inspections", params={"station": station, "limit": 100},
                  headers=live.auth("reviewer"), timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def station_name() -> str:
    return f"i{uuid.uuid4().hex[:12]}"


def test_a_resend_is_answered_from_the_record(live: Live) -> None:
    station, key = station_name(), uuid.uuid4().hex
    first = post(live, defect_frame(seed=4), station, key)
    assert first.status_code == 200, first.text
    assert first.json()["replayed"] is False
    # the resend may even carry other bytes (a re-encoded frame): the key decides
    again = post(live, good_frame(seed=1), station, key)
    assert again.status_code == 200, again.text
    a, b = first.json(), again.json()
    assert b["replayed"] is True
    for field in ("id", "verdict", "score", "threshold", "model", "links", "part_id"):
        assert a[field] == b[field], field
    assert [r["id"] for r in records(live, station)] == [a["id"]]
    # without a key, or with another key, the same bytes are a new frame
    assert post(live, defect_frame(seed=4), station, None).json()["replayed"] is False
    assert post(live, defect_frame(seed=4), station, key + "x").json()["replayed"] is False
    assert len(records(live, station)) == 3


def test_a_key_is_scoped_to_its_station(live: Live) -> None:
    key = uuid.uuid4().hex
    s1, s2 = station_name(), station_name()
    a = post(live, good_frame(seed=2), s1, key).json()
    b = post(live, good_frame(seed=2), s2, key).json()
    assert a["id"] != b["id"] and not b["replayed"]


def test_two_copies_in_flight_make_one_record(live: Live) -> None:
    station = station_name()
    keys = [uuid.uuid4().hex for _ in range(6)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda k: post(live, defect_frame(seed=7), station, k),
                                keys + keys))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    by_key: dict[str, set[str]] = {}
    for key, r in zip(keys + keys, answers, strict=True):
        by_key.setdefault(key, set()).add(r.json()["id"])
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert len(records(live, station)) == len(keys)


@pytest.mark.parametrize("key", ["k" * 129, "tab\there", "caf\u00e9\u0085"])
def test_a_bad_key_is_refused_with_422(live: Live, key: str) -> None:
    headers = {"Content-Type": "image/jpeg", **live.auth("camera")}
    r = httpx.post(f"{live.url}/v1/inspect", params={"station": "s1"}, timeout=30,
                   content=good_frame(), headers={**headers,
                                                  "Idempotency-Key": key.encode("utf-8")})
    assert r.status_code == 422, r.text
    assert "Idempotency-Key" in r.text or "idempotency" in r.text.lower()
