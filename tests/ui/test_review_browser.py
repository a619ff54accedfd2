"""A reviewer in a real browser: sign in, review three flagged parts with the keyboard, and
find the labels in the database. Chromium at /usr/bin/chromium, driven by Playwright.

The README's screenshots come from the real demo instead: tests/ui/demo_screenshots.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from inspector.store import inspections as store_inspections
from inspector.store.db import Database
from tests.server.conftest import Live
from tests.server.harness import REPO
from tests.ui.conftest import api_review, post_frame

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
#: Where the README's screenshots live (tests/ui/demo_screenshots.py writes them).
SHOTS = REPO / "docs" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright package is not installed (pip install playwright)"),
]


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.set_default_timeout(20_000)
        try:
            yield context.new_page()
        finally:
            browser.close()


def populate(live: Live) -> list[str]:
    """A drifting press (brightness creeps up towards the threshold), two quieter stations,
    and one earlier review that makes 'scratch' a known defect type. Returns press-1 fails."""
    press: list[str] = []
    for i in range(72):
        body = post_frame(live, "press-1", f"FL-{1000 + i}", brightness=60 + 0.9 * i,
                          defect=i % 9 == 4, seed=i)
        if body["verdict"] == "fail":
            press.append(str(body["id"]))
    for station, n in (("press-2", 18), ("lathe-3", 24)):
        for i in range(n):
            post_frame(live, station, f"{station[:2].upper()}-{200 + i}",
                       brightness=70 + (i % 7) * 3, defect=i % 6 == 2, seed=500 + i)
    api_review(live, press[0], "defect", "scratch")  # the oldest fail
    return press


def current_id(page: Page) -> str:
    value = page.get_attribute("[data-inspection]", "data-inspection")
    assert value
    return value


def test_sign_in_and_review_three_parts_by_keyboard(ui_sqlite: Live, page: Page) -> None:
    live = ui_sqlite
    press_fails = populate(live)

    page.goto(f"{live.url}/ui/")
    assert "/ui/login" in page.url
    page.fill("#key", live.keys["reviewer"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/ui/")
    assert page.locator("[data-testid=queue-row]").count() > 0

    page.goto(f"{live.url}/ui/?station=press-1")
    queue_text = page.inner_text("[data-testid=queue-count]")
    assert queue_text.startswith(f"{len(press_fails) - 1} parts awaiting review")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # start with the newest flagged part
    first = current_id(page)
    assert first == press_fails[-1]
    assert page.is_visible("[data-testid=heatmap]")
    page.keyboard.press("h")  # the heatmap toggles off and back on
    assert page.eval_on_selector("#heat-overlay", "e => e.style.opacity") == "0"
    page.keyboard.press("h")
    page.fill("#heat-opacity", "80")
    page.dispatch_event("#heat-opacity", "input")
    assert page.eval_on_selector("#heat-overlay", "e => e.style.opacity") == "0.8"

    page.keyboard.press("1")  # 1 = scratch (the type used before)
    assert page.is_checked("input[name=defect_type][value=scratch]")
    with page.expect_navigation():
        page.keyboard.press("d")
    second = current_id(page)
    assert second != first and "is a defect (scratch)" in page.inner_text(
        "[data-testid=saved-banner]")
    with page.expect_navigation():
        page.keyboard.press("g")
    third = current_id(page)
    assert third not in (first, second)
    assert "is good" in page.inner_text("[data-testid=saved-banner]")
    with page.expect_navigation():
        page.keyboard.press("d")
    fourth = current_id(page)
    assert fourth not in (first, second, third)
    with page.expect_navigation():
        page.keyboard.press("s")  # skip: nothing recorded, on to the next part
    assert current_id(page) not in (first, second, third, fourth)

    # The labels are in the database: through the API scripts use, and in the store.
    rows = httpx.get(f"{live.url}/v1/reviews", params={"station": "press-1"},
                     headers=live.auth("reviewer"), timeout=30).json()["items"]
    got = {r["inspection_id"]: (r["label"], r["defect_type"], r["reviewer"]) for r in rows}
    assert got == {
        first: ("defect", "scratch", "test-reviewer"),
        second: ("good", None, "test-reviewer"),
        third: ("defect", None, "test-reviewer"),
        press_fails[0]: ("defect", "scratch", "test-reviewer"),
    }
    db = Database(f"sqlite:///{Path(live.process.env['INSPECTOR_DATA_DIR']) / 'inspector.db'}")
    try:
        for inspection_id, label in ((first, "defect"), (second, "good"), (third, "defect")):
            row = store_inspections.get_inspection(db, inspection_id)
            assert row is not None and row.review_state == label
        skipped = store_inspections.get_inspection(db, fourth)
        assert skipped is not None and skipped.review_state == "unreviewed"
    finally:
        db.dispose()

    page.goto(f"{live.url}/ui/stations/press-1")
    # 1 of 4 reviewed fails overturned
    assert page.get_attribute("[data-metric=overturn-rate]", "data-value") == "0.25"
    assert page.is_visible("[data-testid=drift-chart] svg")

    page.click("[data-testid=sign-out]")
    page.wait_for_url("**/ui/login")
    page.goto(f"{live.url}/ui/")
    assert "/ui/login" in page.url
