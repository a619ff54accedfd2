"""fp16 packages: converted, parity-checked against fp32 on ONNX Runtime's CPU, written only
when they agree, recorded in the card, and served like any package by a server that has
neither onnx nor onnxconverter-common (they are the [export] extra)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from inspector.app import create_app
from inspector.cli.app import app
from inspector.core.card import PrecisionParity
from inspector.core.package import sha256_file
from inspector.core.pipeline import Detector
from inspector.export.errors import ExportError
from inspector.export.fp16 import export_fp16, parity_problems
from inspector.settings import Settings
from tests.conftest import encode_bgr
from tests.model_factory import brightness_graph, make_package, part_image

ROOT = Path(__file__).resolve().parents[2]


def frames() -> list[bytes]:
    return [encode_bgr(part_image(defect=i % 2 == 1, seed=i), ".png") for i in range(6)]


@pytest.mark.parametrize("classifier", [False, True])
def test_fp16_package_keeps_the_contract_and_the_verdicts(tmp_path: Path,
                                                          classifier: bool) -> None:
    src = make_package(tmp_path / "models", name="parts", version="4", classifier=classifier)
    out = tmp_path / "models" / "parts" / "4-fp16"
    result = export_fp16(src, out, images=frames())
    assert result.root == out and not list(out.parent.glob(".*"))  # no staging left behind
    card = json.loads((out / "card.json").read_text())
    assert card["version"] == "4-fp16" and card["export"]["precision"] == "fp16"
    assert card["onnx_sha256"] == sha256_file(out / "model.onnx") != sha256_file(
        src / "model.onnx")
    parity = card["export"]["fp16_parity"]
    assert parity["n_images"] == 6 and parity["verdict_flips"] == 0
    assert parity["source_sha256"] == sha256_file(src / "model.onnx")
    assert parity["max_abs_diff_score"] <= 0.02 * parity["score_scale"]
    graph = onnx.load(str(out / "model.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for n in graph.graph.node
               for a in n.attribute if a.name == "value" for t in [a.t])
    fp32, fp16 = Detector.load(src), Detector.load(out)
    assert fp16.card.export.precision == "fp16"
    a, b = fp32.judge_bytes(frames()), fp16.judge_bytes(frames())
    assert [j.verdict for j in a] == [j.verdict for j in b] == ["pass", "fail"] * 3
    assert [j.label for j in a] == [j.label for j in b]


def test_a_graph_that_fp16_cannot_hold_is_refused_and_nothing_is_written(
        tmp_path: Path) -> None:
    graph = brightness_graph(48, 64)
    for node in graph.graph.node:  # anomaly_map = gray / 2.55e8: fp16 clamps it to 1e4
        if node.output[0] == "k255":
            node.attribute[0].t.CopyFrom(onnx.helper.make_tensor("k255", 1, [], [2.55e8]))
    src = make_package(tmp_path / "models", graph=graph, threshold=1e-7)
    out = tmp_path / "models" / "tiny" / "1-fp16"
    with pytest.raises(ExportError, match=r"scores differ by up to .* maps differ"):
        export_fp16(src, out)
    assert not out.exists() and sorted(p.name for p in out.parent.iterdir()) == ["1"]


def test_verdict_flips_are_counted_against_the_allowance() -> None:
    parity = PrecisionParity(n_images=10, max_abs_diff_score=0.001, max_abs_diff_map=0.001,
                             score_scale=1.0, map_scale=1.0, tolerance=0.02, verdict_flips=1,
                             source_sha256="0" * 64)
    assert parity_problems(parity, max_flips=0) == [
        "1 of 10 verdicts flip at the threshold (allowed 0)"]
    assert parity_problems(parity, max_flips=1) == []


def test_cli_writes_the_package_and_refuses_a_used_folder(tmp_path: Path) -> None:
    src = make_package(tmp_path / "models")
    out = tmp_path / "models" / "tiny" / "2"
    r = CliRunner().invoke(app, ["export", "fp16", str(src), "--out", str(out),
                                 "--version", "2"])
    assert r.exit_code == 0, r.output
    assert "wrote tiny:2 (fp16)" in r.stdout and "verdict flips 0" in r.stdout
    again = CliRunner().invoke(app, ["export", "fp16", str(src), "--out", str(out)])
    assert again.exit_code == 2 and "already exists and is not empty" in again.stderr
    bad = CliRunner().invoke(app, ["export", "fp16", str(src), "--out", str(tmp_path / "x"),
                                   "--version", "no/slash"])
    assert bad.exit_code == 2 and "is not a valid name" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_server_serves_fp16_beside_fp32_and_names_provider_and_precision(
        tmp_path: Path) -> None:
    models = tmp_path / "models"
    src = make_package(models)
    export_fp16(src, models / "tiny" / "1-fp16")
    settings = Settings(models_dir=models, data_dir=tmp_path / "data", auth_enabled=False,
                        work_threads=1, stations={"a": "tiny:1", "b": "tiny:1-fp16"})
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        listed = client.get("/v1/models").json()["models"]
        verdicts = [client.post(f"/v1/inspect?station={st}", content=frames()[1],
                                headers={"Content-Type": "image/png"}).json()["verdict"]
                    for st in ("a", "b")]
    assert ready["models"] == ["tiny:1", "tiny:1-fp16"]
    assert set(ready["providers"]) == {"tiny:1", "tiny:1-fp16"}
    for entry in ready["providers"].values():
        assert entry["provider"] in ("cpu", "cuda", "tensorrt") and entry["reason"]
    assert {m["version"]: m["precision"] for m in listed} == {"1": "fp32", "1-fp16": "fp16"}
    assert all(m["provider_reason"] for m in listed)
    assert verdicts == ["fail", "fail"]


def test_serving_an_fp16_package_needs_no_converter(tmp_path: Path) -> None:
    src = make_package(tmp_path / "models")
    out = export_fp16(src, tmp_path / "models" / "tiny" / "1-fp16").root
    code = textwrap.dedent(f"""
        import sys
        for name in ("onnx", "onnxconverter_common"):
            sys.modules[name] = None  # importing them now fails, as in a base install
        from inspector.core.pipeline import Detector
        det = Detector.load({str(out)!r})
        assert det.card.export.precision == "fp16"
        print(det.judge_bytes([open({str(tmp_path / 'f.png')!r}, 'rb').read()])[0].verdict)
    """)
    (tmp_path / "f.png").write_bytes(frames()[1])
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "fail"


@pytest.mark.slow
@pytest.mark.train
def test_the_trained_demo_model_converts_within_tolerance(demo_folder: Path,
                                                          tmp_path: Path) -> None:
    """The real thing: the demo's EfficientNet-Lite0 + PatchCore package, judged on its own
    test images (on the CPU fp16 is slower than fp32; that is expected)."""
    from inspector.core.datasets import walk_images

    blobs = [p.read_bytes() for p in walk_images([demo_folder / "dataset" / "test"])]
    result = export_fp16(demo_folder / "models" / "demo" / "1", tmp_path / "demo-fp16",
                         images=blobs)
    p = result.parity
    assert p.n_images == len(blobs) and p.verdict_flips == 0
    assert p.max_abs_diff_score <= 0.02 * p.score_scale
    fp16 = Detector.load(result.root)
    assert fp16.card.export.precision == "fp16" and fp16.card.threshold.value > 0
