"""The `inspector` command as a user runs it (a real subprocess of the installed script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import encode_bgr
from tests.model_factory import part_image


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("inspector") or str(Path(sys.executable).parent / "inspector")
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    (d / "good.png").write_bytes(encode_bgr(part_image(seed=1), ".png"))
    (d / "scratch.jpg").write_bytes(encode_bgr(part_image(300, 200, defect=True), ".jpg"))
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return d


def test_inspect_json_judges_good_files_and_names_the_bad_one(
    tiny_package: Path, image_dir: Path, tmp_path: Path
) -> None:
    heat = tmp_path / "heat"
    proc = run_cli("inspect", tiny_package, image_dir, "--json", "--heatmaps", heat)
    assert proc.returncode == 1, proc.stderr
    rows = {Path(r["file"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == {"good.png", "scratch.jpg"}
    assert rows["good.png"]["verdict"] == "pass"
    assert rows["scratch.jpg"]["verdict"] == "fail"
    assert rows["scratch.jpg"]["score"] >= rows["scratch.jpg"]["threshold"]
    assert Path(rows["scratch.jpg"]["heatmap"]).stat().st_size > 0
    errors = [line for line in proc.stderr.splitlines() if "corrupt.jpg" in line]
    assert len(errors) == 1 and "error" in errors[0]
    assert "1 of 3 file(s) could not be judged" in proc.stderr


def test_inspect_table_output(tiny_package: Path, image_dir: Path) -> None:
    proc = run_cli("inspect", tiny_package, image_dir / "good.png", image_dir / "scratch.jpg")
    assert proc.returncode == 0, proc.stderr
    assert "good.png" in proc.stdout and "pass" in proc.stdout and "fail" in proc.stdout


def test_inspect_refuses_a_broken_package(tiny_package: Path, image_dir: Path) -> None:
    (tiny_package / "model.onnx").write_bytes(b"tampered")
    proc = run_cli("inspect", tiny_package, image_dir)
    assert proc.returncode == 2
    assert "does not match" in proc.stderr and "model.onnx" in proc.stderr


def test_models_validate(tiny_package: Path) -> None:
    proc = run_cli("models", "validate", tiny_package)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: tiny:1 (anomaly)")


def test_missing_file_is_an_error_for_that_file_only(tiny_package: Path, image_dir: Path) -> None:
    proc = run_cli("inspect", tiny_package, image_dir / "good.png", image_dir / "missing.png")
    assert proc.returncode == 1
    assert "missing.png" in proc.stderr and "good.png" in proc.stdout


def test_cli_import_does_not_load_torch_or_fastapi() -> None:
    code = (
        "import sys, inspector.core, inspector.cli; "
        "bad = [m for m in ('torch', 'fastapi', 'training') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
