"""The part page fits the screen: at 1366x768 and 1920x1080, for tall, wide and square frames,
the frame, the legend and the decision buttons are inside the window without scrolling, and the
time label stays on one line. A real server and real frames, in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.server.conftest import Live
from tests.ui.frames import part_frame
from tests.ui.test_review_browser import CHROMIUM, CHROMIUM_ARGS, pytestmark  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCREENS = [(1366, 768), (1920, 1080)]
#: (width, height) of the posted frames: tall, wide, square, and a big square one.
SHAPES = {"tall": (360, 960), "wide": (1280, 360), "square": (600, 600), "big": (2400, 2400)}
MUST_SHOW = ["[data-testid=frame]", "#heat-overlay", "[data-testid=legend]", "#btn-defect",
             "#btn-good", "#btn-skip"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        found = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture(scope="module")
def parts(ui_sqlite: Live) -> dict[str, str]:
    """One failed part per frame shape: inspection ids by shape."""
    ids = {}
    for name, (width, height) in SHAPES.items():
        r = httpx.post(f"{ui_sqlite.url}/v1/inspect",
                       params={"station": "press-9", "part_id": f"SHAPE-{name}"},
                       content=part_frame(brightness=150, defect=True, width=width, height=height),
                       headers={"Content-Type": "image/jpeg", **ui_sqlite.auth("camera")},
                       timeout=30)
        assert r.status_code == 200 and r.json()["verdict"] == "fail", r.text
        ids[name] = str(r.json()["id"])
    return ids


def signed_in(browser: Browser, live: Live, width: int, height: int) -> Page:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live.url}/ui/login")
    page.fill("#key", live.keys["reviewer"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/ui/")
    return page


def assert_fits(page: Page, what: str) -> None:
    assert page.locator("[data-testid=frame]").count() == 1, f"{what}: no frame on {page.url}"
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
    width, height = page.evaluate("[innerWidth, innerHeight]")
    for selector in MUST_SHOW:
        box = page.locator(selector).bounding_box(timeout=5000)
        assert box, f"{what}: {selector} is not shown"
        inside = (box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width + 0.5
                  and box["y"] + box["height"] <= height + 0.5)
        assert inside, f"{what}: {selector} at {box} is not inside the {width}x{height} window"
    assert page.evaluate("document.scrollingElement.scrollHeight <= innerHeight"), what
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth"), what
    # The frame scales to the space there is, not to its stored size: the picture (object-fit
    # inside the frame box) fills the box's width or its height.
    fill = page.eval_on_selector("[data-testid=frame]", """i => {
        const s = Math.min(i.clientWidth / i.naturalWidth, i.clientHeight / i.naturalHeight);
        return Math.max(i.naturalWidth * s / i.clientWidth, i.naturalHeight * s / i.clientHeight);
    }""")
    assert fill > 0.99, f"{what}: the frame fills {fill:.0%} of its box"
    assert page.locator("[data-testid=frame]").bounding_box()["height"] >= 0.5 * height, what
    # The time and its "N min ago" on one line: no wrap inside or between the two.
    lines = page.eval_on_selector("[data-testid=part-time]", """dd => {
        const r = document.createRange(); r.selectNodeContents(dd);
        return new Set(Array.from(r.getClientRects()).map(c => Math.round(c.top))).size;
    }""")
    assert lines == 1, f"{what}: the time label takes {lines} lines"


@pytest.mark.parametrize(("width", "height"), SCREENS, ids=[f"{w}x{h}" for w, h in SCREENS])
def test_part_page_fits_the_window_for_every_frame_shape(
    ui_sqlite: Live, parts: dict[str, str], browser: Browser, width: int, height: int
) -> None:
    page = signed_in(browser, ui_sqlite, width, height)
    try:
        for name, inspection_id in parts.items():
            page.goto(f"{ui_sqlite.url}/ui/parts/{inspection_id}?station=press-9")
            assert_fits(page, f"{name} frame at {width}x{height}")
        # After a decision the next part opens under a "Saved" banner: it still fits.
        page.goto(f"{ui_sqlite.url}/ui/parts/{parts['big']}?station=press-9")  # the newest
        with page.expect_navigation():
            page.keyboard.press("g")
        assert page.is_visible("[data-testid=saved-banner]")
        assert_fits(page, f"next part under the saved banner at {width}x{height}")
    finally:
        page.context.close()
