"""Signed model packages against a real server: with require_signed on, unsigned and untrusted
packages are refused at startup (the rest serve), at upload and at deploy; a package signed
by a trusted key is accepted, deployed and shown with its signer (API, review desk). With it
off, unsigned and untrusted packages serve, and a package changed since signing never does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inspector.core.signing import sign_package
from inspector.core.signing_keys import generate_key_pair, key_id, load_private_key
from tests.lifecycle.conftest import RegServer, frame, running
from tests.lifecycle.packing import tar_gz
from tests.lifecycle.test_upload import assert_error, nothing_left
from tests.model_factory import make_package
from tests.ui.conftest import form_token
from tests.ui.test_review_browser import CHROMIUM, CHROMIUM_ARGS
from tests.ui.test_review_browser import pytestmark as browser_marks

pytestmark = pytest.mark.slow


class Signer:
    """A key pair on disk (the .pub goes into trusted_keys) that signs packages."""

    def __init__(self, folder: Path, name: str) -> None:
        pair = generate_key_pair()
        self.name = name
        self.key_id = pair.key_id
        self.pub = folder / f"{name}.pub"
        folder.mkdir(parents=True, exist_ok=True)
        self.pub.write_bytes(pair.public_pem)
        self.key: Ed25519PrivateKey = load_private_key(pair.private_pem, name)
        assert key_id(self.key.public_key()) == self.key_id

    def sign(self, pkg: Path) -> Path:
        sign_package(pkg, self.key, self.name)
        return pkg


def tampered(pkg: Path) -> Path:
    """A signed package whose threshold was changed afterwards."""
    card = pkg / "card.json"
    card.write_text(card.read_text().replace('"value": 0.5', '"value": 0.2'))
    return pkg


def models_entry(server: RegServer, ref: str) -> dict[str, Any]:
    for m in server.call("GET", "/v1/models", role="reviewer").json()["models"]:
        if f"{m['name']}:{m['version']}" == ref:
            return dict(m)
    raise AssertionError(f"{ref} is not listed")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Signer]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: Signer(folder, name) for name in ("alice", "mallory")}


@pytest.fixture(scope="module")
def strict(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           keys: dict[str, Signer]) -> Iterator[RegServer]:
    """require_signed on, alice trusted; the models folder holds tiny:1 signed by alice,
    rogue:1 unsigned and forged:1 signed by mallory."""
    root = tmp_path_factory.mktemp("strict")
    keys["alice"].sign(make_package(root / "models"))
    make_package(root / "models", name="rogue")
    keys["mallory"].sign(make_package(root / "models", name="forged"))
    with running(request, root, {"s1": "tiny:1"}, INSPECTOR_REQUIRE_SIGNED="true",
                 INSPECTOR_TRUSTED_KEYS=json.dumps([str(keys["alice"].pub)])) as server:
        yield server


def test_startup_skips_unsigned_and_untrusted_packages_and_serves_the_rest(
        strict: RegServer, keys: dict[str, Signer]) -> None:
    log = strict.process.log()
    refusals = [line for line in log.splitlines() if "refusing model package" in line]
    assert any("rogue" in line and "not signed" in line for line in refusals), refusals
    assert any("forged" in line and keys["mallory"].key_id in line
               and "not a trusted key" in line for line in refusals), refusals
    assert strict.loaded() == ["tiny:1"]
    refused = strict.call("GET", "/v1/models").json()["refused"]
    assert sorted(Path(p).parent.name for p in refused) == ["forged", "rogue"]
    assert strict.inspect("s1", frame()).status_code == 200


def test_models_list_shows_the_signer(strict: RegServer, keys: dict[str, Signer]) -> None:
    sig = models_entry(strict, "tiny:1")["signature"]
    assert (sig["key_id"], sig["signer"], sig["trusted"]) == (keys["alice"].key_id, "alice", True)
    assert sig["signed_at"].startswith("20")


def test_upload_refuses_unsigned_untrusted_and_tampered(
        strict: RegServer, keys: dict[str, Signer], pkg_root: Path) -> None:
    unsigned = make_package(pkg_root, version="2")
    err = assert_error(strict.upload(tar_gz(unsigned)), 422, "not signed", "require_signed")
    assert "inspector models sign" in err["hint"]
    nothing_left(strict, "tiny", "2")

    untrusted = keys["mallory"].sign(make_package(pkg_root, version="3"))
    err = assert_error(strict.upload(tar_gz(untrusted)), 422, keys["mallory"].key_id,
                       "not a trusted key")
    assert "trusted_keys" in err["hint"]
    nothing_left(strict, "tiny", "3")

    changed = tampered(keys["alice"].sign(make_package(pkg_root, version="4")))
    assert_error(strict.upload(tar_gz(changed)), 422, "card changed since signing: re-sign",
                 keys["alice"].key_id)
    nothing_left(strict, "tiny", "4")


def test_trusted_upload_is_accepted_shown_and_deployed(
        strict: RegServer, keys: dict[str, Signer], pkg_root: Path) -> None:
    pkg = keys["alice"].sign(make_package(pkg_root, version="5", threshold=0.3))
    r = strict.upload(tar_gz(pkg))
    assert r.status_code == 201, r.text
    assert r.json()["signature"]["key_id"] == keys["alice"].key_id
    assert (strict.models_dir / "tiny" / "5" / "signature.json").is_file()
    assert models_entry(strict, "tiny:5")["signature"]["signer"] == "alice"
    r = strict.deploy("s1", "tiny:5")
    assert r.status_code == 200, r.text
    answer = strict.inspect("s1", frame(100)).json()  # scores ~0.39: fails at 0.3
    assert answer["model"]["version"] == "5" and answer["verdict"] == "fail"


def test_deploy_refuses_an_installed_unsigned_package(strict: RegServer) -> None:
    assert (strict.models_dir / "rogue" / "1").is_dir()
    assert_error(strict.deploy("s2", "rogue:1"), 422, "rogue", "not signed")
    assert "rogue:1" not in strict.loaded()
    assert strict.call("GET", "/v1/stations/s2/model").json()["active"] is None


def test_models_page_shows_the_signer_without_a_browser(strict: RegServer,
                                                        keys: dict[str, Signer]) -> None:
    with httpx.Client(base_url=strict.url, timeout=30) as client:
        page = client.get("/ui/login")
        r = client.post("/ui/login", data={"key": strict.keys["reviewer"], "next": "/ui/models",
                                           "csrf": form_token(page.text)})
        assert r.status_code == 303, r.text
        html = client.get("/ui/models").text
    row = html.split('data-model="tiny:1"', 1)[1].split("</tr>", 1)[0]
    assert "alice" in row and keys["alice"].key_id in row and "trusted" in row
    assert "rogue" in html.split("Refused packages", 1)[1]


def _browser(fn: Any) -> Any:
    for mark in browser_marks:
        fn = mark(fn)
    return fn


@_browser
def test_models_page_shows_the_signer_in_a_browser(strict: RegServer,
                                                   keys: dict[str, Signer]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{strict.url}/ui/models")
            page.fill("#key", strict.keys["reviewer"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{strict.url}/ui/models")
            row = page.locator('tr[data-model="tiny:1"]')
            assert row.locator("[data-testid=signer]").inner_text() == "alice"
            assert keys["alice"].key_id in row.locator("[data-testid=key-id]").inner_text()
            assert row.locator(".badge").inner_text().strip().lower() == "trusted"
            page.click("nav.mainnav >> text=Stations")
            page.click("nav.mainnav >> text=Models")
            page.wait_for_url(f"{strict.url}/ui/models")
        finally:
            browser.close()


def test_without_require_signed_only_tampered_packages_are_refused(
        request: pytest.FixtureRequest, tmp_path: Path, keys: dict[str, Signer]) -> None:
    """Unsigned and untrusted packages serve (shown as such); a changed one never does."""
    make_package(tmp_path / "models")
    keys["mallory"].sign(make_package(tmp_path / "models", name="other"))
    tampered(keys["alice"].sign(make_package(tmp_path / "models", name="changed")))
    with running(request, tmp_path, {"s1": "tiny:1"},
                 INSPECTOR_TRUSTED_KEYS=json.dumps([str(keys["alice"].pub)])) as server:
        assert server.loaded() == ["other:1", "tiny:1"]
        assert models_entry(server, "tiny:1")["signature"] is None
        other = models_entry(server, "other:1")["signature"]
        assert (other["key_id"], other["trusted"]) == (keys["mallory"].key_id, False)
        log = server.process.log()
        assert any("changed" in line and "card changed since signing" in line
                   for line in log.splitlines() if "refusing model package" in line), log
        assert f"key {keys['mallory'].key_id}" in log  # warned as untrusted
