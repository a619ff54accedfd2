"""The API docs (/docs, Swagger UI; /redoc) render with no network: their assets are served
by the server itself, never from a CDN. Chromium at /usr/bin/chromium, driven by Playwright,
with every request that leaves the server aborted."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.model_factory import make_package
from tests.server.harness import ServerProcess, base_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("docs")
    make_package(root / "models")
    env = base_env(root / "data", INSPECTOR_AUTH_ENABLED="false")
    with ServerProcess(env, root / "models", root / "server.log") as srv:
        yield srv


@pytest.mark.slow
def test_docs_pages_reference_only_the_servers_own_assets(server: ServerProcess) -> None:
    for path in ("/docs", "/redoc"):
        page = httpx.get(server.url + path, timeout=10)
        assert page.status_code == 200
        assert "cdn.jsdelivr.net" not in page.text and "unpkg.com" not in page.text, page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css") if path == "/docs" else (
                "redoc.standalone.js",):
            start = page.text.index(asset)
            url = page.text[page.text.rindex('"', 0, start) + 1: page.text.index('"', start)]
            assert url.startswith("/"), url  # on this server
            assert httpx.get(server.url + url, timeout=10).status_code == 200


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium is not installed at {CHROMIUM}")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                    reason="the playwright package is not installed (pip install playwright)")
def test_swagger_ui_renders_with_the_network_off(server: ServerProcess) -> None:
    from playwright.sync_api import Route, sync_playwright

    own = urlsplit(server.url).netloc
    blocked: list[str] = []

    def only_this_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(20_000)
            context.route("**/*", only_this_server)
            page = context.new_page()
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".swagger-ui .info .title")
            assert "Inspector" in page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector("[data-path=\"/v1/inspect\"]")  # listed from openapi.json
        finally:
            browser.close()
    assert not [u for u in blocked if not u.startswith("data:")], blocked
