"""`inspector bench --server` against a real `inspector serve`: a run in which every request
fails exits 1 with one line naming the failure; the default station is one the server maps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from inspector.cli.app import app
from inspector.store.db import Database
from inspector.store.keys import create_key
from tests.model_factory import make_package, part_image
from tests.server.harness import ServerProcess, base_env, free_port, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    import cv2

    root = tmp_path_factory.mktemp("bench")
    make_package(root / "models", name="tiny", version="1")
    frames = root / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), part_image())
    env = base_env(root / "data", INSPECTOR_STATIONS='{"press-1": "tiny:1"}')
    with ServerProcess(env, root / "models", root / "server.log") as srv:
        yield srv, frames


def _bench(srv: ServerProcess, frames: Path, *extra: str, seconds: float = 0.5) -> Result:
    """`inspector bench --server ...`, run in this process (the server is a real one)."""
    return CliRunner().invoke(app, ["bench", "--server", srv.url, "--images", str(frames),
                                    "--clients", "2", "--seconds", str(seconds),
                                    "--warmup", "0.2", *extra])


def _key(srv: ServerProcess, role: str) -> str:
    """A key made in the server's own database, as `inspector keys create` makes it."""
    db = Database(f"sqlite:///{Path(srv.env['INSPECTOR_DATA_DIR']) / 'inspector.db'}")
    try:
        return create_key(db, role, f"bench-{role}")[1]
    finally:
        db.dispose()


def test_all_requests_unauthorised_exit_1_with_the_reason(
        server: tuple[ServerProcess, Path]) -> None:
    srv, frames = server
    r = _bench(srv, frames, "--key", "insp_00000000_nope")
    assert r.exit_code == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    assert "requests failed: 401" in errors[0] and "--key" in errors[0]


def test_unknown_station_exit_1_naming_the_server_stations(
        server: tuple[ServerProcess, Path]) -> None:
    srv, frames = server
    r = _bench(srv, frames, "--key", _key(srv, "camera"), "--station", "nowhere")
    assert r.exit_code == 1, r.stderr
    assert "requests failed: 404" in r.stderr and "press-1" in r.stderr, r.stderr


def test_default_station_is_one_the_server_serves(server: tuple[ServerProcess, Path]) -> None:
    srv, frames = server
    # may read /v1/models; a window long enough for a loaded CI machine to answer in
    r = _bench(srv, frames, "--key", _key(srv, "admin"), "--json", seconds=5)
    assert r.exit_code == 0, r.stderr
    assert "station press-1" in r.stderr


def test_no_server_exit_1(tmp_path: Path) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), part_image())
    r = run_cli(["bench", "--server", f"http://127.0.0.1:{free_port()}", "--images",
                 str(tmp_path), "--clients", "1", "--seconds", "0.3", "--warmup", "0.1",
                  "--station", "s1"],
                base_env(tmp_path / "data"), check=False)
    assert r.returncode == 1, r.stderr
    assert "ConnectionRefusedError" in r.stderr and "server running" in r.stderr
