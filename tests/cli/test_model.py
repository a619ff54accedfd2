"""`inspector dataset synth`, `evaluate` and `calibrate` through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inspector.core.card import read_card
from inspector.core.package import sha256_file
from inspector.synth import DEFECT_TYPES, make_defect
from tests.cli.test_inspect import run_cli
from tests.model_factory import brightness_graph, make_package


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    proc = run_cli("dataset", "synth", "--out", out, "--n-train", "4", "--n-test-good", "12",
                   "--n-test-defect", "6", "--size", "96")
    assert proc.returncode == 0, proc.stderr
    return out


def test_synth_writes_mvtec_layout_with_masks(synth_data: Path) -> None:
    assert len(list((synth_data / "train/good").glob("*.png"))) == 4
    for kind in DEFECT_TYPES:
        images = sorted((synth_data / "test" / kind).glob("*.png"))
        masks = sorted((synth_data / "ground_truth" / kind).glob("*_mask.png"))
        assert len(images) == len(masks) == 6


def test_synth_defect_masks_cover_the_painted_pixels() -> None:
    rng = np.random.default_rng(5)
    for kind in DEFECT_TYPES:
        _, mask = make_defect(rng, 96, kind)
        assert mask.any(), kind
        assert set(np.unique(mask)) <= {0, 255}


def test_evaluate_json_has_the_contract_keys(synth_data: Path, models_root: Path) -> None:
    pkg = make_package(models_root, width=64, height=64)
    proc = run_cli("evaluate", pkg, "--data", synth_data, "--json")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    for key in ("image_auroc", "pixel_auroc", "f1", "threshold", "false_reject_rate",
                "escape_rate", "n_good", "n_defect", "ms_per_image"):
        assert key in m, key
    assert (m["n_good"], m["n_defect"]) == (12, 18)
    assert 0.0 <= m["image_auroc"] <= 1.0 and 0.0 <= m["pixel_auroc"] <= 1.0
    assert m["ms_per_image"] > 0
    for plot in ("roc.png", "score_hist.png", "worst_cases.png"):
        assert (pkg / "report" / plot).stat().st_size > 1000


def test_calibrate_rewrites_only_the_card(synth_data: Path, models_root: Path) -> None:
    pkg = make_package(models_root, width=64, height=64, threshold=0.99)
    onnx_before = sha256_file(pkg / "model.onnx")
    proc = run_cli("calibrate", pkg, "--data", synth_data, "--method", "target_frr",
                   "--target-frr", "0.1")
    assert proc.returncode == 0, proc.stderr
    card = read_card(pkg / "card.json")
    assert card.threshold.method == "target_frr" and card.threshold.target == 0.1
    assert card.threshold.value != 0.99 and card.threshold.n_good == 12
    assert sha256_file(pkg / "model.onnx") == onnx_before
    # The new threshold holds on the data it was chosen on.
    m = json.loads(run_cli("evaluate", pkg, "--data", synth_data, "--json",
                           "--no-report").stdout)
    assert m["false_reject_rate"] <= 0.1
    assert m["threshold"] == card.threshold.value


def test_calibrate_best_f1_needs_defects(synth_data: Path, models_root: Path,
                                         tmp_path: Path) -> None:
    pkg = make_package(models_root, width=64, height=64)
    goods_only = tmp_path / "goods"
    (goods_only / "good").mkdir(parents=True)
    for f in sorted((synth_data / "test/good").glob("*.png"))[:5]:
        (goods_only / "good" / f.name).write_bytes(f.read_bytes())
    proc = run_cli("calibrate", pkg, "--data", goods_only, "--method", "best_f1")
    assert proc.returncode == 2 and "needs defect images" in proc.stderr


def test_train_help_lists_its_options() -> None:
    proc = run_cli("train", "--help")
    assert proc.returncode == 0 and "--data" in proc.stdout


def _write_split(pkg: Path, data: Path, val: list[str], test: list[str]) -> None:
    doc = {"root": str(data.resolve()), "layout": "mvtec", "train": [], "val": val, "test": test}
    (pkg / "report" / "split.json").write_text(json.dumps(doc))


def test_evaluate_and_calibrate_use_the_packages_own_split(
    synth_data: Path, models_root: Path
) -> None:
    pkg = make_package(models_root, width=64, height=64, threshold=0.99)
    test = ["test/good/000.png", "test/good/001.png", "test/spot/000.png"]
    val = ["train/good/000.png", "train/good/001.png", "train/good/002.png"]
    _write_split(pkg, synth_data, val, test)
    proc = run_cli("evaluate", pkg, "--data", synth_data, "--json", "--no-report")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert (m["n_good"], m["n_defect"]) == (2, 1)
    proc = run_cli("calibrate", pkg, "--data", synth_data)
    assert proc.returncode == 0, proc.stderr
    card = read_card(pkg / "card.json")
    assert card.threshold.method == "target_frr" and card.threshold.n_good == 3
    assert card.threshold.n_defect == 0


def test_a_split_of_another_data_folder_is_ignored(
    synth_data: Path, models_root: Path, tmp_path: Path
) -> None:
    pkg = make_package(models_root, width=64, height=64)
    _write_split(pkg, tmp_path, [], ["test/good/000.png"])
    m = json.loads(run_cli("evaluate", pkg, "--data", synth_data, "--json", "--no-report").stdout)
    assert (m["n_good"], m["n_defect"]) == (12, 18)


def test_train_knob_errors_are_one_line_and_help_lists_the_knobs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    proc = run_cli("train", "--data", tmp_path, "--out", tmp_path / "m" / "1",
                   "--set", "image_size=abc")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "image_size=abc: expected an integer" in proc.stderr
    proc = run_cli("train", "--data", tmp_path, "--out", tmp_path / "m" / "1", "--set", "help")
    assert proc.returncode == 0, proc.stderr
    assert "layers=null" in proc.stdout and "max_minutes=null" in proc.stdout


def test_evaluate_on_other_data_leaves_the_package_report_alone(
        synth_data: Path, models_root: Path, tmp_path: Path) -> None:
    from inspector.core.card import Provenance

    trained_on = tmp_path / "line-3-parts"
    pkg = make_package(models_root, width=64, height=64,
                       card_overrides={"training": Provenance(data=str(trained_on))})
    (pkg / "report" / "metrics.json").write_text('{"image_auroc": 0.99}')
    proc = run_cli("evaluate", pkg, "--data", synth_data, "--json")
    assert proc.returncode == 0, proc.stderr
    assert (pkg / "report" / "metrics.json").read_text() == '{"image_auroc": 0.99}'
    assert not (pkg / "report" / "roc.png").exists()
    other = pkg / f"report-{synth_data.name}"
    assert (other / "roc.png").stat().st_size > 1000
    assert f"plots go to {other}" in " ".join(proc.stderr.split())

    chosen = tmp_path / "mine"
    proc = run_cli("evaluate", pkg, "--data", synth_data, "--json", "--report-dir", chosen)
    assert proc.returncode == 0 and (chosen / "roc.png").is_file()

    # On the data it was trained on, report/ is the place.
    same = make_package(models_root, name="same", width=64, height=64,
                        card_overrides={"training": Provenance(data=str(synth_data))})
    assert run_cli("evaluate", same, "--data", synth_data, "--json").returncode == 0
    assert (same / "report" / "roc.png").is_file()


def test_evaluate_reports_operating_points_aupro_and_the_cost_curve(
    synth_data: Path, models_root: Path
) -> None:
    pkg = make_package(models_root, width=64, height=64)
    m = json.loads(run_cli("evaluate", pkg, "--data", synth_data, "--json").stdout)
    points = m["operating_points"]
    assert (points["n_good"], points["n_defect"]) == (12, 18)
    assert set(points["escape_at_frr"]) == {"0.01", "0.02", "0.05"}
    assert set(points["frr_at_escape"]) == {"0", "0.01", "0.02"}
    assert set(points["per_type"]) == set(DEFECT_TYPES)
    for p in points["escape_at_frr"].values():  # 12 goods: 1% and 2% allow none, 5% none
        assert p["false_rejects"] == 0 and 0.0 <= p["escape_rate"] <= 1.0
    assert points["frr_at_escape"]["0"]["escapes"] == 0
    assert 0.0 <= m["aupro"] <= 1.0
    assert (pkg / "report" / "cost_curve.png").stat().st_size > 1000
    human = run_cli("evaluate", pkg, "--data", synth_data, "--no-report").stdout
    assert "operating points" in human and "FRR <= 5.0%" in human and "card threshold" in human
    assert "escape <= 0.0%" in human and f"{DEFECT_TYPES[0]} (6)" in human


def test_calibrate_prints_the_tradeoff_and_takes_either_target(
    synth_data: Path, models_root: Path
) -> None:
    pkg = make_package(models_root, width=64, height=64, threshold=0.99)
    card_before = (pkg / "card.json").read_text()
    proc = run_cli("calibrate", pkg, "--data", synth_data, "--split", "test",
                   "--target-escape", "0.0", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "on 12 good and 18 defect images" in proc.stdout
    assert "FRR <= 10.0%" in proc.stdout and "-> target_escape" in proc.stdout
    assert (pkg / "card.json").read_text() == card_before  # a dry run writes nothing
    # --target-frr alone means target_frr, even on data with defects (auto would be best F1).
    proc = run_cli("calibrate", pkg, "--data", synth_data, "--split", "test",
                   "--target-frr", "0.1")
    assert proc.returncode == 0, proc.stderr
    card = read_card(pkg / "card.json")
    assert card.threshold.method == "target_frr" and card.threshold.target == 0.1
    proc = run_cli("calibrate", pkg, "--data", synth_data, "--target-frr", "0.1",
                   "--target-escape", "0.01")
    assert proc.returncode == 2 and "give one target" in proc.stderr
    proc = run_cli("calibrate", pkg, "--data", synth_data, "--target-escape", "5")
    assert proc.returncode == 2 and "from 0 to below 1" in proc.stderr


def nan_score_graph(height: int, width: int) -> onnx.ModelProto:
    """The brightness graph whose score is NaN on bright frames (score + 0 * log(0.5 - score)):
    a broken export that the loader's all-black probe frames do not reveal."""
    model = brightness_graph(height, width)
    graph = model.graph
    graph.node[-1].output[0] = "raw"

    def const(name: str, value: float) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name],
                                value=helper.make_tensor(name, TensorProto.FLOAT, [], [value]))

    graph.node.extend([
        const("half", 0.5), const("zero", 0.0),
        helper.make_node("Sub", ["half", "raw"], ["room"]),
        helper.make_node("Log", ["room"], ["log"]),
        helper.make_node("Mul", ["log", "zero"], ["nan_if_bright"]),
        helper.make_node("Add", ["raw", "nan_if_bright"], ["score"]),
    ])
    onnx.checker.check_model(model)
    return model


def test_a_model_that_scores_nan_is_a_clear_error(synth_data: Path, models_root: Path) -> None:
    pkg = make_package(models_root, width=64, height=64, graph=nan_score_graph(64, 64))
    proc = run_cli("evaluate", pkg, "--data", synth_data, "--json", "--no-report")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "are NaN or infinite" in proc.stderr
