"""A tiled package behind the real server: a big frame in, a verdict and a heatmap of the whole
frame out, over HTTP; a frame that needs too many tiles is refused with 413 before decoding."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest

from inspector.core.card import TilingSpec
from tests.conftest import encode_bgr
from tests.model_factory import make_package
from tests.server.harness import ServerProcess, base_env

pytestmark = pytest.mark.slow

SPOT = (2200, 700)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tiled-srv")
    tiling = TilingSpec(tile_width=128, tile_height=96, overlap=0.25)
    make_package(root / "models", name="tiled", card_overrides={"tiling": tiling})
    env = base_env(root / "data", INSPECTOR_AUTH_ENABLED="false", INSPECTOR_SAMPLE_PASSES="0",
                   INSPECTOR_STATIONS='{"s1": "tiled:1"}', INSPECTOR_MAX_BATCH="4")
    with ServerProcess(env, root / "models", root / "server.log") as srv:
        yield srv


def frame(spot: bool) -> bytes:
    """A dark 3000 x 2000 frame (6 MP PNG); with a bright 30-px spot."""
    img = np.full((2000, 3000, 3), 30, dtype=np.uint8)
    if spot:
        cv2.circle(img, SPOT, 15, (250, 250, 250), -1)
    return encode_bgr(img, ".png")


def inspect(server: ServerProcess, body: bytes, **params: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/inspect", params={"station": "s1", **params},
                      content=body, headers={"Content-Type": "image/png"}, timeout=60)


def test_big_frame_gets_a_verdict_and_a_whole_frame_heatmap(server: ServerProcess) -> None:
    answer = inspect(server, frame(spot=True), heatmap="inline")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["verdict"] == "fail" and body["model"]["name"] == "tiled"
    jpeg = base64.b64decode(body["heatmap_inline"].split(",", 1)[1])
    overlay = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape[:2] == (1365, 2048)  # the whole frame, bounded to 2048 px
    red = overlay[:, :, 2].astype(int) - overlay[:, :, 0].astype(int)
    py, px = np.unravel_index(np.argmax(red), red.shape)
    assert abs(px * 3000 / 2048 - SPOT[0]) < 80 and abs(py * 2000 / 1365 - SPOT[1]) < 80
    good = inspect(server, frame(spot=False))
    assert good.status_code == 200 and good.json()["verdict"] == "pass"


def test_frame_needing_too_many_tiles_is_413_with_a_hint(server: ServerProcess) -> None:
    # 16000 x 3000 (legal pixels and sides): 167 x 42 tiles, over the 2048-tile limit
    wide = encode_bgr(np.full((3000, 16000), 30, dtype=np.uint8), ".png")
    answer = inspect(server, wide)
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert "7014 tiles" in error["message"] and "crop" in error["hint"]
