"""End to end on tiny synthetic images: train, export, load through inspector.core, and get
the scores PyTorch gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inspector.core.package import load_model  # noqa: E402
from inspector.core.pipeline import Detector  # noqa: E402
from training.cli import train_command  # noqa: E402
from training.datasets import load_splits  # noqa: E402
from training.errors import TrainingError  # noqa: E402
from training.train import TrainResult  # noqa: E402

pytestmark = [pytest.mark.train, pytest.mark.slow]


def _onnx_and_torch_scores(out: Path, model: torch.nn.Module, samples: list) -> tuple:  # type: ignore[type-arg]
    detector = Detector.load(out)
    frames = [detector.prepare_bytes(s.path.read_bytes()) for s in samples]
    onnx_scores = np.array([j.score for j in detector.infer(frames)])
    batch = torch.from_numpy(np.stack([f.model_input for f in frames]))
    with torch.no_grad():
        outputs = model(batch)
    return onnx_scores, outputs[0].numpy(), detector, outputs


def assert_same_scores(onnx_scores: np.ndarray, torch_scores: np.ndarray) -> None:
    """Equal up to float32 noise: 1e-3 of the largest score (the export's own tolerance)."""
    scale = float(np.abs(torch_scores).max())
    np.testing.assert_allclose(onnx_scores, torch_scores, rtol=0, atol=1e-3 * scale)


@contextmanager
def cpu_load() -> Iterator[None]:
    """Other work on the cores, as on a shared build machine: one spinning child process per
    two cores, at a lower priority so that the test stays fast (the point is load that changes
    every timing, not a slow run)."""
    spin = "import os; os.nice(10)\nwhile True: pass"
    count = max(1, (os.cpu_count() or 2) // 2)
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _test_scores(result: TrainResult, samples: list) -> np.ndarray:  # type: ignore[type-arg]
    detector = Detector.load(result.out)
    frames = [detector.prepare_bytes(s.path.read_bytes()) for s in samples]
    return np.array([j.score for j in detector.infer(frames)])


def _train_anomaly(data: Path, out: Path) -> TrainResult:
    return train_command(data=data, out=out, image_size=96, seed=3)


@pytest.fixture(scope="module")
def anomaly_run(mvtec_set: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """One anomaly model trained on the synthetic set, shared by the tests that only read it
    (each run costs a few seconds, most of it the ONNX export)."""
    out = tmp_path_factory.mktemp("anomaly") / "models" / "synth" / "1"
    return _train_anomaly(mvtec_set, out)


def test_anomaly_model_trains_exports_and_loads_with_pytorch_scores(
    mvtec_set: Path, anomaly_run: TrainResult
) -> None:
    out = anomaly_run.out
    package, _ = load_model(out)  # card schema, sha256, I/O contract, a real run
    card = package.card
    assert card.kind == "anomaly" and card.input.color == "gray"
    assert card.threshold.method == "target_frr" and card.threshold.n_good == 12
    assert "leave-one-image-out" in (card.threshold.data or "")
    assert card.training.seed == 3 and card.training.weights_sha256
    assert card.training.params["patchcore"]["pool"] == 3
    assert card.export.opset == 18 and card.export.parity_images
    assert card.metrics["image_auroc"] is not None and card.metrics["image_auroc"] >= 0.8
    for key in ("escape_at_frr_0.01", "escape_at_frr_0.05", "frr_at_escape_0"):
        value = card.metrics[key]
        assert isinstance(value, float) and 0.0 <= value <= 1.0, key
    assert "aupro" in card.metrics  # None without masks
    assert any(k.startswith("escape_at_frr_0.02/") for k in card.metrics)  # per defect type
    for name in ("roc.png", "score_hist.png", "cost_curve.png", "worst_cases.png"):
        assert (out / "report" / name).stat().st_size > 0

    test = list(load_splits(mvtec_set, seed=3).test)
    onnx_scores, torch_scores, _, outputs = _onnx_and_torch_scores(out, anomaly_run.model, test)
    assert_same_scores(onnx_scores, torch_scores)
    assert outputs[1].shape == (len(test), 96, 96)


def test_same_seed_same_model_under_cpu_load(
    mvtec_set: Path, anomaly_run: TrainResult, tmp_path: Path
) -> None:
    # 12 images x 6 x 6 patches at 96 px: the coreset picks 256 of 432, so the seed matters.
    with cpu_load():
        again = _train_anomaly(mvtec_set, tmp_path / "synth" / "1")
    first = json.loads((anomaly_run.out / "card.json").read_text())
    second = json.loads((again.out / "card.json").read_text())
    assert first["threshold"]["value"] == second["threshold"]["value"]
    assert first["metrics"]["image_auroc"] == second["metrics"]["image_auroc"]
    bank, bank_again = (r.model.state_dict()["bank_matrix"] for r in (anomaly_run, again))
    assert 0 < bank.shape[1] < 432  # a real coreset: one column per kept patch
    assert torch.equal(bank, bank_again)  # the same memory bank, patch for patch
    test = list(load_splits(mvtec_set, seed=3).test)
    assert np.array_equal(_test_scores(anomaly_run, test), _test_scores(again, test))


def test_timings_cover_every_phase_in_summary_and_card(anomaly_run: TrainResult) -> None:
    seconds = anomaly_run.card.training.params["timings_s"]
    phases = ("read", "fit", "export", "parity", "calibrate", "package", "evaluate")
    assert set(seconds) == {*phases, "total"}
    assert all(seconds[p] >= 0 for p in phases) and seconds["fit"] > 0
    # The total is the wall clock of the whole run: at least the phases (rounding aside).
    assert seconds["total"] >= sum(seconds[p] for p in phases) - 0.5
    summary = "\n".join(anomaly_run.summary())
    assert f"in {seconds['total']:.1f} s wall clock" in summary
    for phase in phases:
        assert f"{phase} {seconds[phase]:.1f}" in summary
    assert "WARNING" not in summary


def test_refuses_to_overwrite_a_package(mvtec_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "m" / "1"
    out.mkdir(parents=True)
    (out / "card.json").write_text("{}")
    with pytest.raises(TrainingError, match="already holds a model package"):
        train_command(data=mvtec_set, out=out)


def _train_classifier(data: Path, out: Path, **knobs: object) -> TrainResult:
    # Two short epochs of 32 class-balanced draws exercise the whole loop, early-stopping
    # bookkeeping included.
    small = {"image_size": 64, "epochs": 2, "patience": 2, "samples_per_epoch": 32}
    return train_command(data=data, out=out, kind="classifier", **{**small, **knobs})


@pytest.fixture(scope="module")
def classifier_run(labeled_set: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return _train_classifier(labeled_set, tmp_path_factory.mktemp("cls") / "models" / "cls" / "1")


def test_classifier_same_seed_same_model_under_cpu_load(
    labeled_set: Path, classifier_run: TrainResult, tmp_path: Path
) -> None:
    # No wall-clock budget by default: a busy machine runs the same epochs as an idle one.
    assert classifier_run.card.training.params["classifier"]["max_minutes"] is None
    with cpu_load():
        again = _train_classifier(labeled_set, tmp_path / "cls" / "1")
    assert again.card.threshold.value == classifier_run.card.threshold.value
    assert again.card.metrics["epochs_run"] == classifier_run.card.metrics["epochs_run"]
    test = list(load_splits(labeled_set).test)
    assert np.array_equal(_test_scores(classifier_run, test), _test_scores(again, test))


def test_a_time_budget_is_reported_loudly(labeled_set: Path, tmp_path: Path) -> None:
    # A budget of 0 minutes ends the run after its first epoch.
    result = _train_classifier(labeled_set, tmp_path / "cls" / "1", max_minutes=0, epochs=3)
    card = result.card
    assert card.metrics["epochs_run"] == 1 and card.metrics["time_budget_min"] == 0
    assert "time budget" in str(card.metrics["stopped"])
    assert "WARNING" in card.description and "time budget" in card.description
    assert any(
        line.startswith("WARNING: the classifier stopped on its time budget")
        for line in result.summary()
    )


def test_classifier_trains_exports_and_loads(
    labeled_set: Path, classifier_run: TrainResult
) -> None:
    result, out = classifier_run, classifier_run.out
    package, _ = load_model(out)
    card = package.card
    assert card.kind == "classifier"
    assert card.labels == ["good", "crack", "scratch", "spot"]
    assert card.threshold.method == "best_f1"
    assert card.metrics["epochs_run"] == 2

    test = list(load_splits(labeled_set).test)
    onnx_scores, torch_scores, detector, _ = _onnx_and_torch_scores(out, result.model, test)
    assert_same_scores(onnx_scores, torch_scores)
    probs = detector.infer([detector.prepare_bytes(test[0].path.read_bytes())])[0].probabilities
    assert probs is not None and probs.shape == (4,) and abs(float(probs.sum()) - 1) < 1e-5


def test_failed_export_leaves_no_package_behind(
    mvtec_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.train
    from training.export import ExportError

    staged: list[Path] = []

    def half_written(model: object, path: Path, *args: object, **kwargs: object) -> None:
        path.write_bytes(b"half an ONNX file")  # into the staging folder, then fail
        staged.append(path)
        raise ExportError(f"{path}: onnx.checker rejected the graph")

    monkeypatch.setattr(training.train, "export_onnx", half_written)
    out = tmp_path / "models" / "synth" / "1"
    with pytest.raises(ExportError, match="rejected"):
        train_command(data=mvtec_set, out=out, image_size=64)
    assert staged and staged[0].parent != out  # the export wrote somewhere other than `out`
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # nor is the staging folder left behind
