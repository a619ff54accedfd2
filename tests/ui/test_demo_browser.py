"""The review desk on the real demo, as a new user first sees it: `inspector demo` trains its
model, serves and posts its frames; in Chromium at 1366x768 and 1920x1080 the newest failed
part fits the window, and its heatmap shows where the defect is rather than a uniform wash."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.server.harness import CLI, REPO, base_env, free_port
from tests.ui.test_part_fits_browser import SCREENS, assert_fits
from tests.ui.test_review_browser import CHROMIUM, CHROMIUM_ARGS
from tests.ui.test_review_browser import pytestmark as browser_marks

pytestmark = [*browser_marks, pytest.mark.train]  # the demo trains its model


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_folder: Path
         ) -> Iterator[tuple[str, str]]:
    """A running `inspector demo`: its URL and the reviewer key it printed. Its data set and
    model are the demo's own, trained once per test run (`demo_folder`); the demo reuses them
    (tests/cli/test_demo.py covers the start from an empty folder)."""
    root = tmp_path_factory.mktemp("demo-browser")
    for part in ("dataset", "models"):
        shutil.copytree(demo_folder / part, root / "demo" / part)
    port = free_port()
    env = base_env(root / "unused")
    env.pop("INSPECTOR_DATA_DIR")
    out_path = root / "stdout.txt"
    with out_path.open("wb") as out, (root / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen([*CLI, "demo", "--port", str(port), "--data-dir",
                                 str(root / "demo")], env=env, stdout=out, stderr=err, cwd=REPO)
        try:
            deadline = time.monotonic() + 240
            while "review queue" not in out_path.read_text():
                assert proc.poll() is None, (root / "stderr.txt").read_text()
                assert time.monotonic() < deadline, "the demo printed no URLs"
                time.sleep(0.5)
            key = re.search(r"reviewer key\s+(insp_\S+)", out_path.read_text())
            assert key, out_path.read_text()
            yield f"http://127.0.0.1:{port}", key.group(1)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _red_share(jpeg: bytes) -> float:
    """Share of the overlay's pixels that the colour map paints hot (red well above blue and
    green)."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    b, g, r = (bgr[..., i].astype(np.int16) for i in range(3))
    return float(((r - np.maximum(g, b)) > 60).mean())


@pytest.mark.parametrize(("width", "height"), SCREENS, ids=[f"{w}x{h}" for w, h in SCREENS])
def test_demo_failed_part_fits_and_its_heatmap_points_at_the_defect(
    demo: tuple[str, str], width: int, height: int
) -> None:
    from playwright.sync_api import sync_playwright

    url, reviewer = demo
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": width, "height": height}).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{url}/ui/login")
            page.fill("#key", reviewer)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/ui/")
            with page.expect_navigation():
                page.keyboard.press("Enter")  # the newest flagged part
            assert_fits(page, f"demo part at {width}x{height}")
            heat_src = page.get_attribute("#heat-overlay", "src")
            assert heat_src
            heat = page.request.get(url + heat_src if heat_src.startswith("/") else heat_src)
            assert heat.status == 200
            red = _red_share(heat.body())
        finally:
            browser.close()
    # Some of the frame is hot (the defect) and most of it is not: no uniform red wash.
    assert 0.005 < red < 0.5, f"red covers {red:.1%} of the heatmap"
