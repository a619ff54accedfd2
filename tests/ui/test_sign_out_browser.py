"""In a real browser: after signing out, putting the old session cookie back does not sign the
browser in again. Chromium at /usr/bin/chromium, driven by Playwright."""

from __future__ import annotations

from tests.server.conftest import Live
from tests.ui.conftest import post_frame
from tests.ui.test_review_browser import CHROMIUM, CHROMIUM_ARGS
from tests.ui.test_review_browser import pytestmark as browser_marks

pytestmark = browser_marks


def test_restored_cookie_after_sign_out_lands_on_sign_in(ui_sqlite: Live) -> None:
    from playwright.sync_api import sync_playwright

    live = ui_sqlite
    fail = post_frame(live, "press-9", "B-1", defect=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(20_000)
            page = context.new_page()
            page.goto(f"{live.url}/ui/")
            assert "/ui/login" in page.url
            page.fill("#key", live.keys["reviewer"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{live.url}/ui/")
            old = [c for c in context.cookies() if c["name"] == "insp_session"]
            assert len(old) == 1
            image_url = f"{live.url}/ui/parts/{fail['id']}/image"
            assert page.request.get(image_url).status == 200

            with page.expect_navigation():
                page.click("[data-testid=sign-out]")
            assert page.url.startswith(f"{live.url}/ui/login")
            assert not [c for c in context.cookies() if c["name"] == "insp_session"]

            context.add_cookies(old)  # type: ignore[arg-type]
            assert [c["value"] for c in context.cookies() if c["name"] == "insp_session"] \
                == [old[0]["value"]]
            page.goto(f"{live.url}/ui/")
            assert page.url.startswith(f"{live.url}/ui/login")
            assert page.is_visible("#key")
            assert page.request.get(image_url).status == 401
        finally:
            browser.close()
