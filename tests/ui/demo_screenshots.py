"""The README's review-desk screenshots, taken from a running `inspector demo` at 1366x768:
the review queue, the newest failed part (heatmap on) and station press-1.

    inspector demo --port 8765 --data-dir /tmp/demo &      # prints the reviewer key
    python -m tests.ui.demo_screenshots http://127.0.0.1:8765 REVIEWER_KEY
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.ui.test_review_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS


def take(url: str, reviewer_key: str, out: Path = SHOTS) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    pages = [("review-queue.png", None), ("review-part.png", "Enter"),
             ("station.png", "/ui/stations/press-1")]
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
            page.goto(f"{url}/ui/login")
            page.fill("#key", reviewer_key)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/ui/")
            for name, step in pages:
                if step == "Enter":  # the queue's first (newest) flagged part
                    with page.expect_navigation():
                        page.keyboard.press("Enter")
                elif step:
                    page.goto(f"{url}{step}")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / name))
                written.append(out / name)
        finally:
            browser.close()
    return written


if __name__ == "__main__":
    for path in take(sys.argv[1].rstrip("/"), sys.argv[2]):
        print(path)
