"""Property tests against the real app: whatever frame bytes, Content-Type and query string a
camera sends, the answer is never a 5xx, and a good frame still gets its verdict afterwards."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.conftest import encode_bgr
from tests.fuzz.conftest import FuzzApp
from tests.hostile_corpus import HostileFrame, hostile_corpus
from tests.model_factory import part_image

pytestmark = pytest.mark.fuzz

#: FUZZ_EXAMPLES=2000 (and FUZZ_RANDOM=1 for fresh inputs each run) digs deeper than CI does.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                derandomize=not os.environ.get("FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

GOOD_JPEG = encode_bgr(part_image(defect=False), ".jpg")
GOOD_PNG = encode_bgr(part_image(defect=True), ".png")
CTYPES = ["image/jpeg", "image/png", "image/bmp", "image/tiff", "image/webp",
          "application/octet-stream", "image/", "IMAGE/JPEG; charset=utf-8", "text/plain", ""]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real JPEG or PNG with bytes flipped, cut, inserted or repeated."""
    data = bytearray(draw(st.sampled_from([GOOD_JPEG, GOOD_PNG])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 512))] * draw(st.integers(1, 8))
    return bytes(data)


@st.composite
def odd_images(draw: st.DrawFn) -> bytes:
    """Valid images of odd shapes, channels, depths and formats."""
    width, height = draw(st.integers(1, 400)), draw(st.integers(1, 300))
    channels = draw(st.sampled_from([1, 3, 4]))
    ext = draw(st.sampled_from([".jpg", ".png", ".bmp", ".tiff", ".webp"]))
    deep = ext in (".png", ".tiff") and draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = (height, width) if channels == 1 else (height, width, channels)
    img = rng.integers(0, 65535 if deep else 255, size=shape, endpoint=True,
                       dtype=np.uint16 if deep else np.uint8)
    if channels == 4 and ext in (".jpg", ".bmp"):
        img = img[..., :3]
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return bytes(buf.tobytes())


frames = st.one_of(st.binary(max_size=4096), mutated(), odd_images(),
                   st.sampled_from([b"", GOOD_JPEG[:2], GOOD_PNG[:8], b"\xff\xd8\xff\xd9"]))
names = st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,70}", fullmatch=True)


def _assert_good_frame_judged(client: TestClient, fuzz: FuzzApp) -> None:
    r = client.post("/v1/inspect", params={"station": "after-fuzz"}, content=GOOD_JPEG,
                    headers={**fuzz.auth("camera"), "Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "pass"


def test_frame_bytes_never_answer_5xx(client: TestClient, fuzz_app: FuzzApp) -> None:
    seen: set[int] = set()

    @FUZZ
    @given(data=frames, ctype=st.sampled_from(CTYPES), multipart=st.booleans())
    def post(data: bytes, ctype: str, multipart: bool) -> None:
        headers = fuzz_app.auth("camera")
        if multipart:
            r = client.post("/v1/inspect", params={"station": "fuzz"}, headers=headers,
                            files={"image": ("f", data, ctype or "application/octet-stream")})
        else:
            r = client.post("/v1/inspect", params={"station": "fuzz"}, content=data,
                            headers={**headers, "Content-Type": ctype})
        seen.add(r.status_code)
        assert r.status_code < 500, (r.status_code, r.text, ctype, multipart, data[:64])
        if r.status_code >= 400:
            assert r.json()["error"]["message"], r.text  # a clear error, not a bare status

    post()
    assert 200 in seen and any(400 <= s < 500 for s in seen), seen  # both paths were reached
    _assert_good_frame_judged(client, fuzz_app)


def test_query_strings_never_answer_5xx(client: TestClient, fuzz_app: FuzzApp) -> None:
    @FUZZ
    @given(station=names, part_id=st.none() | st.text(max_size=200),
           heatmap=st.none() | st.sampled_from(["link", "inline"]) | st.text(max_size=10),
           extra=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40),
                                 max_size=3))
    def post(station: str, part_id: str | None, heatmap: str | None,
             extra: dict[str, str]) -> None:
        params = {**extra, "station": station}
        if part_id is not None:
            params["part_id"] = part_id
        if heatmap is not None:
            params["heatmap"] = heatmap
        r = client.post("/v1/inspect", params=params, content=GOOD_JPEG,
                        headers={**fuzz_app.auth("camera"), "Content-Type": "image/jpeg"})
        assert r.status_code < 500, (r.status_code, r.text, params)
        assert r.status_code in (200, 400, 404, 422), (r.status_code, r.text, params)

    post()
    _assert_good_frame_judged(client, fuzz_app)


def test_listing_queries_never_answer_5xx(client: TestClient, fuzz_app: FuzzApp) -> None:
    """The reviewer's list filters take free text and numbers: never a 5xx either."""

    @FUZZ
    @given(params=st.dictionaries(
        st.sampled_from(["station", "verdict", "review_state", "model", "since", "until",
                         "limit", "cursor", "part_id", "min_score", "max_score"]),
        st.text(max_size=40) | st.integers(-(2**70), 2**70).map(str), max_size=5))
    def get(params: dict[str, str]) -> None:
        r = client.get("/v1/inspections", params=params, headers=fuzz_app.auth("reviewer"))
        assert r.status_code < 500, (r.status_code, r.text, params)

    get()
    assert client.get("/v1/inspections", headers=fuzz_app.auth("reviewer")).status_code == 200


@pytest.mark.parametrize("frame", hostile_corpus(), ids=lambda f: f.name)
def test_hostile_corpus_as_multipart(client: TestClient, fuzz_app: FuzzApp,
                                     frame: HostileFrame) -> None:
    """The hostile corpus (tests/hostile_corpus.py) uploaded as multipart/form-data, the other
    way a camera may send a frame: the same status class as a raw body, never a 5xx."""
    r = client.post("/v1/inspect", params={"station": "hostile"}, headers=fuzz_app.auth("camera"),
                    files={"image": (frame.name, frame.data, "application/octet-stream")})
    assert r.status_code < 500, r.text
    if frame.expected != "any":
        assert f"{r.status_code // 100}xx" == frame.expected, (r.status_code, r.text)
    if frame.status is not None:
        assert r.status_code == frame.status, r.text
