"""POST /v1/models against a real server: valid packages are validated, stored, recorded and
served; invalid, duplicate and malicious uploads get a clear 4xx and leave nothing behind."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest
from onnx import TensorProto, helper

from tests.lifecycle.conftest import RegServer, frame, wait_for
from tests.lifecycle.packing import file_info, link_info, tar_gz, tar_with, zip_of
from tests.model_factory import brightness_graph, make_package

pytestmark = pytest.mark.slow


def assert_error(r: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    for needle in needles:
        assert needle in err["message"] + (err["hint"] or ""), err
    return err


def nothing_left(reg: RegServer, name: str, version: str) -> None:
    assert not (reg.models_dir / name / version).exists()
    uploads = reg.models_dir / ".uploads"
    assert not uploads.exists() or os.listdir(uploads) == []
    assert f"{name}:{version}" not in reg.loaded()


def test_valid_tar_gz_is_validated_stored_recorded_and_loaded(reg: RegServer,
                                                              pkg_root: Path) -> None:
    pkg = make_package(pkg_root, version="2", threshold=0.3)
    r = reg.upload(tar_gz(pkg))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["name"], body["version"], body["threshold"]) == ("tiny", "2", 0.3)
    assert body["smoke_ms"] > 0 and body["unpacked_bytes"] > 0
    installed = reg.models_dir / "tiny" / "2"
    assert (installed / "model.onnx").read_bytes() == (pkg / "model.onnx").read_bytes()
    assert Path(body["path"]) == installed.resolve()
    assert "tiny:2" in reg.loaded()
    rows = reg.query("SELECT name, version, path FROM model_versions WHERE version = '2'")
    assert rows == [("tiny", "2", str(installed.resolve()))]
    # Uploading does not deploy: the station keeps its model.
    answer = reg.inspect("s1", frame(100)).json()
    assert answer["model"] == {"name": "tiny", "version": "1"} and answer["verdict"] == "pass"
    nothing_left(reg, "none", "0")


def test_zip_as_multipart_upload(reg: RegServer, pkg_root: Path) -> None:
    pkg = make_package(pkg_root, name="zipped", version="1")
    r = reg.call("POST", "/v1/models",
                 files={"package": ("zipped.zip", zip_of(pkg), "application/zip")})
    assert r.status_code == 201, r.text
    assert "zipped:1" in reg.loaded()


def test_duplicate_versions_are_refused(reg: RegServer, pkg_root: Path) -> None:
    again = make_package(pkg_root, version="1")  # tiny:1 is served from the models folder
    assert_error(reg.upload(tar_gz(again)), 409, "tiny:1", "new version")
    dup = make_package(pkg_root / "x", name="dup", version="1")
    assert reg.upload(tar_gz(dup)).status_code == 201
    assert_error(reg.upload(zip_of(dup), "application/zip"), 409, "dup:1")


def _io_graph_with_input_named(name: str) -> onnx.ModelProto:
    g = brightness_graph(48, 64)
    g.graph.input[0].name = name
    g.graph.node[0].input[0] = name
    return g


def _nan_on_bright_frames() -> onnx.ModelProto:
    """Finite on the all-zero test batch, NaN on a real frame: only a real smoke run sees it."""
    g = brightness_graph(48, 64)
    nodes = list(g.graph.node)
    div = next(n for n in nodes if n.op_type == "Div")
    div.output[0] = "m0"
    extra = [
        helper.make_node("Constant", [], ["k01"],
                         value=helper.make_tensor("k01", TensorProto.FLOAT, [], [0.1])),
        helper.make_node("Sub", ["k01", "m0"], ["m1"]),
        helper.make_node("Sqrt", ["m1"], ["anomaly_map"]),
    ]
    i = nodes.index(div) + 1
    del g.graph.node[:]
    g.graph.node.extend(nodes[:i] + extra + nodes[i:])
    onnx.checker.check_model(g)
    return g


def test_invalid_packages_get_422_and_leave_nothing(reg: RegServer, pkg_root: Path) -> None:
    tampered = make_package(pkg_root / "a", name="tampered")
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes() + b"\0")
    assert_error(reg.upload(tar_gz(tampered)), 422, "sha256")
    nothing_left(reg, "tampered", "1")

    badcard = make_package(pkg_root / "b", name="badcard")
    card = json.loads((badcard / "card.json").read_text())
    card["threshold"] = "high"
    (badcard / "card.json").write_text(json.dumps(card))
    assert_error(reg.upload(tar_gz(badcard)), 422, "threshold")
    nothing_left(reg, "badcard", "1")

    wrong_io = make_package(pkg_root / "c", name="wrongio", graph=_io_graph_with_input_named("img"))
    assert_error(reg.upload(tar_gz(wrong_io)), 422, "input named 'image'")
    nothing_left(reg, "wrongio", "1")

    nan = make_package(pkg_root / "d", name="nan", graph=_nan_on_bright_frames())
    assert_error(reg.upload(tar_gz(nan)), 422, "non-finite")
    nothing_left(reg, "nan", "1")

    no_onnx = make_package(pkg_root / "e", name="noonnx")
    (no_onnx / "model.onnx").unlink()
    assert_error(reg.upload(tar_gz(no_onnx)), 422, "model.onnx is missing")

    assert_error(reg.upload(tar_with([(file_info("x/readme.txt"), b"hi")])), 422, "no card.json")
    two = pkg_root / "two"
    make_package(two, name="p", version="1")
    make_package(two, name="q", version="1")
    assert_error(reg.upload(tar_gz(two)), 422, "several packages")
    nothing_left(reg, "p", "1")


def test_malicious_and_malformed_uploads(reg: RegServer, pkg_root: Path,
                                         tmp_path: Path) -> None:
    card = (make_package(pkg_root) / "card.json").read_bytes()
    escape = tar_with([(file_info("pkg/card.json"), card), (file_info("../../escaped"), b"x")])
    assert_error(reg.upload(escape), 400, "unsafe path")
    absolute = tar_with([(file_info(str(tmp_path / "abs-escape")), b"x")])
    assert_error(reg.upload(absolute), 400, "unsafe path")
    assert not (tmp_path / "abs-escape").exists()
    assert not (reg.models_dir.parent / "escaped").exists()
    link = tar_with([(file_info("pkg/card.json"), card),
                     (link_info("pkg/model.onnx", "/etc/passwd"), None)])
    assert_error(reg.upload(link), 400, "not a regular file")
    bomb = tar_with([(file_info("pkg/model.onnx"), b"\0" * 5_000_000)])
    assert len(bomb) < 50_000
    assert_error(reg.upload(bomb), 413, "max_package_bytes")
    assert_error(reg.upload(os.urandom(500_000)), 413, "max_package_bytes")  # over the body limit
    assert_error(reg.upload(b"GIF89a not an archive" * 40), 415, "zip or tar")
    assert_error(reg.upload(tar_gz(pkg_root), "text/plain"), 415, "Content-Type")
    uploads = reg.models_dir / ".uploads"
    assert not uploads.exists() or os.listdir(uploads) == []


def test_only_admins_upload(reg: RegServer, pkg_root: Path) -> None:
    data = tar_gz(make_package(pkg_root, name="roles"))
    assert reg.upload(data, role="camera").status_code == 403
    assert reg.upload(data, role="reviewer").status_code == 403
    r = httpx.post(f"{reg.url}/v1/models", content=data,
                   headers={"Content-Type": "application/gzip"})
    assert r.status_code == 401
    nothing_left(reg, "roles", "1")


def test_download_gives_back_the_installed_package(reg: RegServer, tmp_path: Path) -> None:
    r = reg.call("GET", "/v1/models/tiny/1/package")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/gzip"
    archive = tmp_path / "pkg.tar.gz"
    archive.write_bytes(r.content)
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "out", filter="data")
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert (card["name"], card["version"]) == ("tiny", "1")
    assert (tmp_path / "out" / "model.onnx").read_bytes() == \
        (reg.models_dir / "tiny" / "1" / "model.onnx").read_bytes()
    assert_error(reg.call("GET", "/v1/models/tiny/99/package"), 404, "not installed")
    assert_error(reg.call("GET", "/v1/models/tiny/1/package", role="reviewer"), 403)
    uploads = reg.models_dir / ".uploads"
    wait_for(lambda: not uploads.exists() or os.listdir(uploads) == [],
             what="the packed copy to be removed")
