"""Shared fixtures: tiny model packages and synthetic part images, made on the fly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.store.db import Database
from tests.model_factory import make_package, part_image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
def tiny_package(models_root: Path) -> Path:
    """A valid anomaly package (64x48 input, threshold 0.5) scoring brightness."""
    return make_package(models_root)


@pytest.fixture
def classifier_package(models_root: Path) -> Path:
    return make_package(models_root, name="tinycls", classifier=True)


def encode_bgr(img: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok, f"OpenCV could not encode {ext}"
    return bytes(buf.tobytes())


@pytest.fixture
def good_jpeg() -> bytes:
    return encode_bgr(part_image(defect=False), ".jpg")


@pytest.fixture
def defect_png() -> bytes:
    return encode_bgr(part_image(defect=True), ".png")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database per test: SQLite in a temp folder, and PostgreSQL in a fresh
    schema (skipped with a reason where PostgreSQL is not reachable)."""
    from tests.server.harness import postgres_schema

    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'inspector.db'}")
        database.migrate()
        yield database
        database.dispose()
        return
    with postgres_schema() as url:
        database = Database(url)
        database.migrate()
        yield database
        database.dispose()


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo folder with the demo's synthetic data set and its trained model, made once per
    test run by the demo's own steps (`inspector.demo`); `inspector demo --data-dir` on a copy
    reuses both."""
    pytest.importorskip("torch", reason="training the demo model needs the [train] extra")
    from inspector.demo import DemoConfig, make_dataset, train_model

    cfg = DemoConfig(data_dir=tmp_path_factory.mktemp("demo-shared"))
    make_dataset(cfg)
    train_model(cfg)
    return cfg.data_dir
