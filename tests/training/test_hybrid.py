"""The hybrid model on tiny synthetic data: goods, a few labelled faint spots (type A) that
PatchCore alone finds hard, and scratches (type B) it never saw. One real training run is
shared: train, export, load through inspector.core, compare with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inspector.core.datasets import list_images  # noqa: E402
from inspector.core.errors import DatasetError  # noqa: E402
from inspector.core.metrics import auroc  # noqa: E402
from inspector.core.pipeline import Detector  # noqa: E402
from inspector.core.threshold import choose_threshold  # noqa: E402
from inspector.synth import make_defect, surface  # noqa: E402
from tests.cli.test_inspect import run_cli  # noqa: E402
from training.cli import train_command  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.datasets import has_labelled_defects, load_splits  # noqa: E402
from training.errors import TrainingError  # noqa: E402
from training.train import TrainResult, resolve_kind  # noqa: E402

pytestmark = [pytest.mark.train]

SIZE = 64
N_GOOD, N_LABELLED = 24, 6


def faint_spot(rng: np.random.Generator) -> np.ndarray:
    """A surface with a small spot barely brighter than it: type A."""
    img = surface(rng, SIZE, gray=True)
    centre = tuple(int(v) for v in rng.integers(SIZE // 5, 4 * SIZE // 5, 2))
    shade = int(img.mean()) + 22
    cv2.circle(img, centre, int(rng.integers(3, 5)), (shade,) * 3, -1, cv2.LINE_AA)
    return img


def _save(folder: Path, i: int, img: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{i:03d}.png"), img)


@pytest.fixture(scope="module")
def hybrid_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MVTec layout with train/faint/: labelled type A; test/ has type A and unseen scratches."""
    root = tmp_path_factory.mktemp("hybrid") / "data"
    rng = np.random.default_rng(0)
    for i in range(N_GOOD):
        _save(root / "train" / "good", i, surface(rng, SIZE, gray=True))
    for i in range(N_LABELLED):
        _save(root / "train" / "faint", i, faint_spot(rng))
    for i in range(12):
        _save(root / "test" / "good", i, surface(rng, SIZE, gray=True))
    for i in range(10):
        _save(root / "test" / "faint", i, faint_spot(rng))
    for i in range(8):
        _save(root / "test" / "scratch", i, make_defect(rng, SIZE, "scratch", gray=True)[0])
    return root


@pytest.fixture(scope="module")
def hybrid_run(hybrid_set: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("hybrid_models") / "models" / "hyb" / "1"
    return train_command(data=hybrid_set, out=out, image_size=SIZE)  # kind: auto -> hybrid


def _torch_outputs(result: TrainResult, images: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        score, amap, probs = result.model(torch.from_numpy(images))
        anomaly, _ = result.model.patchcore(torch.from_numpy(images))
    return {"score": score.numpy(), "anomaly_map": amap.numpy(), "probabilities": probs.numpy(),
            "good_only": anomaly.numpy()}


def _test_inputs(result: TrainResult, data: Path) -> tuple[np.ndarray, np.ndarray]:
    detector = Detector.load(result.out)
    test = load_splits(data, val_fraction=0.0).test
    frames = [detector.prepare_bytes(s.path.read_bytes()).model_input for s in test]
    return np.stack(frames), np.array([s.label for s in test])


@pytest.mark.slow
def test_hybrid_catches_the_labelled_type_better_and_still_flags_an_unseen_one(
    hybrid_set: Path, hybrid_run: TrainResult
) -> None:
    assert hybrid_run.card.kind == "hybrid" and hybrid_run.card.labels == ["good", "faint"]
    images, labels = _test_inputs(hybrid_run, hybrid_set)
    out = _torch_outputs(hybrid_run, images)
    good = labels == "good"

    def caught(scores: np.ndarray, kind: str) -> float:
        """Share of `kind` scoring above every test good: caught at zero false rejects."""
        return float(np.mean(scores[labels == kind] > scores[good].max()))

    # The good-only model is the hybrid's own PatchCore part: the same bank, the same map.
    assert caught(out["score"], "faint") > caught(out["good_only"], "faint")
    assert caught(out["score"], "faint") >= 0.8
    scratch = labels == "scratch"
    y = np.r_[np.zeros(good.sum()), np.ones(scratch.sum())]
    assert auroc(y, np.r_[out["score"][good], out["score"][scratch]]) >= 0.95
    # At the card's own threshold the unseen type fails through the anomaly part.
    assert np.mean(out["score"][scratch] >= hybrid_run.card.threshold.value) >= 0.8
    assert out["probabilities"].shape == (len(labels), 2)


@pytest.mark.slow
def test_exported_graph_matches_pytorch(hybrid_set: Path, hybrid_run: TrainResult) -> None:
    images, _ = _test_inputs(hybrid_run, hybrid_set)
    detector = Detector.load(hybrid_run.out)
    onnx_out = detector.model.run(images)
    torch_out = _torch_outputs(hybrid_run, images)
    scale = float(np.abs(torch_out["score"]).max())
    np.testing.assert_allclose(onnx_out["score"], torch_out["score"], rtol=0, atol=1e-3 * scale)
    np.testing.assert_allclose(onnx_out["probabilities"], torch_out["probabilities"], atol=1e-4)
    amap = torch_out["anomaly_map"]
    np.testing.assert_allclose(onnx_out["anomaly_map"], amap, atol=1e-3 * float(amap.max()))
    judged = detector.infer([detector.prepare_array(images[0])])[0]
    assert judged.label in ("good", "faint") and judged.probabilities is not None


@pytest.mark.slow
def test_card_records_what_calibration_saw(hybrid_run: TrainResult) -> None:
    card = json.loads((hybrid_run.out / "card.json").read_text())
    t = card["threshold"]
    assert (t["n_good"], t["n_defect"]) == (N_GOOD, N_LABELLED)
    assert t["n_defect_per_type"] == {"faint": N_LABELLED}
    assert t["max_frr"] == 0.02 and t["method"] in ("target_escape", "target_frr")
    assert 0 <= t["expected_false_reject_rate"] <= 0.02 and 0 <= t["expected_escape_rate"] <= 1
    assert "out-of-fold" in t["data"] and "no validation or test images" in t["data"]
    assert card["metrics"]["cv_folds"] == 5 and card["metrics"]["n_labelled_defects"] == 6
    assert card["training"]["params"]["target_escape"] == 0.01


@pytest.mark.slow
def test_calibration_and_training_never_see_evaluation_images(
    hybrid_set: Path, hybrid_run: TrainResult
) -> None:
    split = json.loads((hybrid_run.out / "report" / "split.json").read_text())
    assert not set(split["train"]) & set(split["test"]) and not split.get("val")
    assert sum(name.startswith("train/faint/") for name in split["train"]) == N_LABELLED
    assert all(name.startswith("test/") for name in split["test"])
    # Calibration counted exactly the training images.
    t = hybrid_run.card.threshold
    assert (t.n_good or 0) + (t.n_defect or 0) == len(split["train"])


def test_labelled_folder_files_leave_the_test_split(hybrid_set: Path, tmp_path: Path) -> None:
    """--labelled reviewed images taken from test/ are trained on and no longer tested."""
    picked = list_images(hybrid_set / "test" / "faint")[:3]
    (tmp_path / "faint").mkdir()
    for f in picked:
        (tmp_path / "faint" / f.name).symlink_to(f)
    splits = load_splits(hybrid_set, val_fraction=0.0, labelled=tmp_path)
    tested = {s.path.resolve() for s in splits.test}
    assert not tested & set(picked) and len(splits.test) == 30 - 3
    assert sum(s.label == "faint" for s in splits.train) == N_LABELLED + 3
    assert any("left out of those splits" in note for note in splits.notes)
    assert has_labelled_defects(hybrid_set) and has_labelled_defects(tmp_path, tmp_path)


def test_a_tiled_model_stays_anomaly_and_hybrid_is_never_tiled(hybrid_set: Path) -> None:
    """Tiling is for anomaly models: kind=auto with labelled defects and a tile size resolves
    to anomaly (the defects are left unused), an explicit hybrid with tiles is refused."""
    tiled = resolve_kind(TrainConfig.from_knobs({"tile": 448}), hybrid_set)
    assert tiled.kind == "anomaly" and tiled.patchcore.pca == 192  # the anomaly defaults
    assert tiled.patchcore.density == 3
    hybrid = resolve_kind(TrainConfig.from_knobs({}), hybrid_set)
    assert hybrid.kind == "hybrid" and hybrid.patchcore.pca == 0  # the hybrid's: every channel
    assert hybrid.patchcore.density == 0  # and plain distances
    asked = resolve_kind(TrainConfig.from_knobs({"pca": 64, "density": 5}), hybrid_set)
    assert asked.kind == "hybrid" and asked.patchcore.pca == 64  # a given value is kept
    assert asked.patchcore.density == 5
    with pytest.raises(TrainingError, match="only anomaly models are tiled, not hybrid"):
        TrainConfig.from_knobs({"tile": 448, "kind": "hybrid"})


def test_auto_falls_back_to_anomaly_with_too_few_labelled_defects(tmp_path: Path,
                                                                   hybrid_set: Path) -> None:
    """One reviewed crack in train/crack/ is not enough for the hybrid's cross-validated
    threshold: kind=auto trains the anomaly model instead of failing; an explicit --labelled
    folder or --kind hybrid still gets the error that says what is missing."""
    rng = np.random.default_rng(3)
    for i in range(4):
        _save(tmp_path / "train" / "good", i, surface(rng, SIZE, gray=True))
        _save(tmp_path / "test" / "good", i, surface(rng, SIZE, gray=True))
    _save(tmp_path / "train" / "crack", 0, surface(rng, SIZE, gray=True))
    assert has_labelled_defects(tmp_path)
    assert resolve_kind(TrainConfig.from_knobs({}), tmp_path).kind == "anomaly"
    assert resolve_kind(TrainConfig.from_knobs({}), hybrid_set).kind == "hybrid"
    named = TrainConfig.from_knobs({"labelled": str(tmp_path / "train")})
    assert resolve_kind(named, tmp_path).kind == "hybrid"


def test_good_only_data_keeps_the_anomaly_default(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _save(tmp_path / "train" / "good", 0, surface(rng, SIZE, gray=True))
    _save(tmp_path / "test" / "good", 0, surface(rng, SIZE, gray=True))
    assert not has_labelled_defects(tmp_path)


def _labelled_dir(root: Path, files: dict[str, int], corrupt: int = 0) -> Path:
    rng = np.random.default_rng(2)
    for kind, n in files.items():
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _save(root / kind, i, faint_spot(rng))
        for i in range(corrupt):
            (root / kind / f"bad{i}.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.mark.parametrize(
    ("files", "corrupt", "expected"),
    [
        ({"faint": 0}, 0, "no images"),
        ({"faint": 1}, 0, "faint: 1"),
        ({"faint": 1}, 3, "faint: 1"),
        ({"faint": 0}, 2, "faint: 0"),
        ({"good": 2}, 0, "no defect type folders"),
    ],
    ids=["empty-type", "single-image", "corrupt-files", "only-corrupt", "no-defect-folder"],
)
def test_bad_labelled_folders_get_clear_errors(
    hybrid_set: Path, tmp_path: Path, files: dict[str, int], corrupt: int, expected: str
) -> None:
    labelled = _labelled_dir(tmp_path / "labelled", files, corrupt)
    with pytest.raises(DatasetError, match=expected) as info:
        train_command(data=_good_only(hybrid_set, tmp_path), out=tmp_path / "m" / "x" / "1",
                      labelled=labelled, image_size=SIZE)
    assert info.value.hint
    assert not (tmp_path / "m" / "x" / "1").exists()


def _good_only(source: Path, tmp_path: Path) -> Path:
    """A good-only MVTec view of `source` (train/good and test/ only)."""
    view = tmp_path / "goods"
    (view / "train").mkdir(parents=True)
    (view / "train" / "good").symlink_to(source / "train" / "good", target_is_directory=True)
    (view / "test").symlink_to(source / "test", target_is_directory=True)
    return view


def test_cli_names_a_missing_labelled_folder_without_a_traceback(
    hybrid_set: Path, tmp_path: Path
) -> None:
    proc = run_cli("train", "--data", hybrid_set, "--out", tmp_path / "m" / "x" / "1",
                   "--labelled", tmp_path / "nowhere")
    assert proc.returncode != 0
    assert "nowhere: no such folder" in proc.stderr and "Traceback" not in proc.stderr


def test_target_escape_is_bounded_by_max_frr() -> None:
    good = np.linspace(0.0, 1.0, 100)
    bad = np.array([0.5, 2.0, 3.0])
    free = choose_threshold(good, bad, target_escape=0.0)
    assert free.method == "target_escape" and free.value == 0.5
    assert free.expected_false_reject_rate == pytest.approx(0.5)
    bounded = choose_threshold(good, bad, target_escape=0.0, max_frr=0.02)
    assert bounded.method == "target_frr" and bounded.target == 0.02
    assert bounded.expected_false_reject_rate <= 0.02
    assert bounded.expected_escape_rate == pytest.approx(1 / 3)
    assert "over max_frr" in (bounded.data or "")


def _patches(rng: np.random.Generator, n: int, spots: dict[int, np.ndarray]) -> torch.Tensor:
    """Patch features [n, C, 4, 4]: good surface noise, with the vector of spots[i] written
    into patch (1, 2) of image i."""
    feats = torch.from_numpy(rng.normal(0.0, 0.1, (n, 8, 4, 4)).astype(np.float32))
    for i, v in spots.items():
        feats[i, :, 1, 2] = torch.from_numpy(v.astype(np.float32))
    return feats


def test_defect_bank_recognises_a_labelled_type_and_hides_an_image_from_itself() -> None:
    """Prototypes of type 1 (a bump along channel 0) and type 2 (along channel 1): a new
    image with a type-1 patch gets type-1 evidence far above a good's and above its own
    type-2 evidence; a bank image scored without its own prototypes looks like a good."""
    from training.hybrid.fit import build_defect_bank, defect_bank_features

    rng = np.random.default_rng(0)
    one, two = np.eye(8)[0] * 3.0, np.eye(8)[1] * 3.0
    labelled = _patches(rng, 4, {0: one, 1: one * 1.1, 2: two, 3: two * 0.9})
    d_good = lambda f: f.norm(dim=1)  # noqa: E731  (distance to a good bank at the origin)
    bank, source = build_defect_bank(labelled, d_good(labelled), np.array([1, 1, 2, 2]), 2, 1)
    assert bank.counts == [2, 2]  # one prototype per image, its farthest patch, by type
    assert source.tolist() == [0, 1, 2, 3]
    new = _patches(rng, 2, {0: one * 0.95})  # image 0: a type-1 defect; image 1: good
    with torch.no_grad():
        ev = bank(new, d_good(new)).numpy()  # [2, 6]: (max, top-3 mean, log min dist) x type
    assert ev[0, 0] > ev[1, 0] + 2.0 and ev[0, 0] > ev[0, 3] + 2.0
    assert bank.n_features == ev.shape[1] == 6
    # Alone with its own type in the bank: scored without itself, image 0 looks like a good.
    alone, src = build_defect_bank(labelled[[0, 2]], d_good(labelled[[0, 2]]), np.array([1, 2]),
                                   2, 1)
    empty = torch.zeros(0, 4, 4, 8), torch.zeros(0, 4, 4)
    held_out = defect_bank_features(alone, src, empty, (labelled[[0]], d_good(labelled[[0]])),
                                    np.array([0, 1]))
    seen = defect_bank_features(alone, src, empty, (labelled[[0]], d_good(labelled[[0]])),
                                np.array([5, 1]))  # row 0 not in the bank: its own entry counts
    assert seen[0, 0] > 5.0 and held_out[0, 0] < 1.0
    assert np.isfinite(held_out).all()


@pytest.mark.slow
def test_hybrid_package_carries_the_defect_bank(hybrid_run: TrainResult) -> None:
    bank = hybrid_run.model.defect_bank
    assert bank is not None and bank.counts == [3 * N_LABELLED]
    channels = hybrid_run.model.patchcore.features.channels  # the head sees raw features
    assert hybrid_run.model.head.in_features == 3 * channels + 3 + 3


def test_defect_bank_searches_in_patchcores_principal_axes() -> None:
    """With PatchCore's projection, the prototypes' distances are those of the projected
    features: the same as a bank built from projected entries and fed projected patches."""
    from training.hybrid.model import DefectBank

    torch.manual_seed(0)
    entries, feats = torch.randn(6, 16), torch.randn(2, 16, 3, 3)
    projection = torch.linalg.qr(torch.randn(16, 5)).Q
    d = torch.rand(2, 3, 3) + 0.5
    projected = torch.einsum("nchw,cd->ndhw", feats, projection)
    with torch.no_grad():
        got = DefectBank(entries, [3, 3], projection)(feats, d)
        want = DefectBank(entries @ projection, [3, 3])(projected, d)
        raw = DefectBank(entries, [3, 3])(feats, d)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, raw, atol=1e-3)
