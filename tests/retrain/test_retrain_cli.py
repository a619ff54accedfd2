"""`inspector retrain` against a real server: frames posted and reviewed over the API, a new
version trained in a child process, both models compared on held-out reviewed frames, and the
new one deployed as the station's shadow only when it is better.

One server, four stations:
- `line-a`: a deliberately weak active model (brightness, threshold 0: every part fails) and
  synthetic surfaces with scratches, spots and cracks: a trained model is clearly better;
- `line-b`: a model that is perfect on its frames (bright blobs on dark parts, which it
  scores by brightness): nothing trained can beat it;
- `line-c`: two reviews only; `nowhere`: no model at all.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inspector.core.card import Provenance
from inspector.synth import SynthConfig, write_dataset
from tests.conftest import encode_bgr
from tests.lifecycle.conftest import RegServer, running
from tests.model_factory import make_package, part_image
from tests.server.harness import CLI, REPO, base_env, free_port

pytest.importorskip("torch")
pytestmark = [pytest.mark.train, pytest.mark.slow]

SIZE = 64
TRAIN_SETS = ["--set", f"image_size={SIZE}"]
TRAINED = Provenance(created_at=datetime(2024, 1, 1, tzinfo=UTC))


def _post_and_review(srv: RegServer, station: str, frames: list[tuple[bytes, str]]) -> None:
    """POST each frame to `station`, then review it: `good` or its defect type."""
    for body, label in frames:
        r = srv.inspect(station, body)
        assert r.status_code == 200, r.text
        review = {"label": "good"} if label == "good" else {"label": "defect",
                                                            "defect_type": label}
        rr = srv.call("POST", f"/v1/inspections/{r.json()['id']}/review", role="reviewer",
                      json=review)
        assert rr.status_code == 201, rr.text


def _synth_frames(root: Path) -> list[tuple[bytes, str]]:
    test = root / "test"
    return [(p.read_bytes(), p.parent.name) for d in sorted(test.iterdir())
            for p in sorted(d.glob("*.png"))]


def _blob_frames(n: int) -> list[tuple[bytes, str]]:
    return [(encode_bgr(part_image(defect=d, seed=i), ".png"), "spot" if d else "good")
            for i in range(n) for d in (False, True)]


@pytest.fixture(scope="module")
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[RegServer]:
    root = tmp_path_factory.mktemp("retrain")
    models = root / "models"
    make_package(models, name="weak", width=SIZE, height=SIZE, threshold=0.0,
                 card_overrides={"training": TRAINED})
    make_package(models, name="perfect", threshold=0.6, card_overrides={"training": TRAINED})
    stations = {"line-a": "weak:1", "line-b": "perfect:1", "line-c": "perfect:1"}
    with running(request, root, stations) as server:
        posted = write_dataset(root / "posted", SynthConfig(
            n_train=0, n_test_good=12, n_test_defect=4, size=SIZE, seed=7))
        assert sum(posted.values()) == 24
        _post_and_review(server, "line-a", _synth_frames(root / "posted"))
        _post_and_review(server, "line-b", _blob_frames(8))
        _post_and_review(server, "line-c", _blob_frames(1))
        yield server


@pytest.fixture(scope="module")
def base_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The weak model's 'own training data': other synthetic surfaces (no posted frame)."""
    root = tmp_path_factory.mktemp("base")
    write_dataset(root, SynthConfig(n_train=20, n_test_good=0, n_test_defect=0, size=SIZE,
                                    seed=1))
    return root


def retrain(srv: RegServer, work: Path, *args: str, role: str = "admin",
            url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = base_env(srv.data_dir.parent / "cli", INSPECTOR_ADMIN_KEY=srv.keys[role])
    cmd = [*CLI, "retrain", "--url", url or srv.url, "--work", str(work), *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)


def station(srv: RegServer, name: str) -> dict[str, str | None]:
    r = srv.call("GET", f"/v1/stations/{name}/model")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_dry_run_then_better_model_lands_as_shadow(srv: RegServer, base_data: Path,
                                                   tmp_path: Path) -> None:
    dry = retrain(srv, tmp_path / "dry", "--station", "line-a", "--base-data", str(base_data),
                  "--dry-run", *TRAIN_SETS)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Dry run: nothing uploaded" in dry.stdout
    assert "active weak:1" in dry.stdout and "new weak:2" in dry.stdout
    assert (tmp_path / "dry" / "models" / "weak" / "2" / "card.json").is_file()
    assert "weak:2" not in srv.loaded() and station(srv, "line-a")["shadow"] is None

    run = retrain(srv, tmp_path / "run", "--station", "line-a", "--base-data", str(base_data),
                  *TRAIN_SETS)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "escapes" in out and "false rejects" in out and "image AUROC" in out
    cmp = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert cmp["decision"]["better"] is True
    # The weak model fails every part: all held-out goods rejected, no escape.
    assert cmp["active"]["false_reject_rate"] == 1.0 and cmp["active"]["escapes"] == 0
    assert cmp["new"]["false_reject_rate"] < 1.0 and cmp["new"]["escapes"] == 0
    held = json.loads((tmp_path / "run" / "split.json").read_text())["held_out"]
    assert cmp["active"]["n_good"] + cmp["active"]["n_defect"] == len(held) > 0
    assert not {Path(h).name for h in held} & {
        p.name for p in (tmp_path / "run" / "train").rglob("*")}  # never trained on
    state = station(srv, "line-a")
    assert state == {"station": "line-a", "active": "weak:1", "shadow": "weak:2",
                     "previous": None}


def test_not_better_exits_3_and_uploads_nothing(srv: RegServer, tmp_path: Path) -> None:
    before = srv.loaded()
    r = retrain(srv, tmp_path / "w", "--station", "line-b", *TRAIN_SETS)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "not better:" in r.stdout and "nothing uploaded" in r.stdout
    assert "active perfect:1" in r.stdout  # the comparison table is printed either way
    assert srv.loaded() == before and station(srv, "line-b")["shadow"] is None


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--station", "nowhere"], 2, "station nowhere has no active model"),
    (["--station", "line-c"], 1, "too few reviewed frames: 2 (1 good, 1 defect)"),
    (["--station", "line-a", "--holdout", "1.5"], 2, "--holdout 1.5"),
    (["--station", "line-a", "--base-data", "/nonexistent-base"], 2, "--base-data"),
])
def test_errors_before_any_training(srv: RegServer, tmp_path: Path, args: list[str], code: int,
                                    message: str) -> None:
    r = retrain(srv, tmp_path / "w", *args)
    assert r.returncode == code, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "w" / "models").exists()


def test_reviewer_key_is_refused(srv: RegServer, tmp_path: Path) -> None:
    r = retrain(srv, tmp_path / "w", "--station", "line-a", role="reviewer")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "not an admin key" in r.stderr and "INSPECTOR_ADMIN_KEY" in r.stderr


def test_unreachable_server(srv: RegServer, tmp_path: Path) -> None:
    r = retrain(srv, tmp_path / "w", "--station", "line-a",
                url=f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot reach the server" in r.stderr and "Traceback" not in r.stderr
