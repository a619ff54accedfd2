"""The feedback loop end to end, with real processes: a server judges frames, QA reviews them,
`inspector dataset export` turns the reviews into a training folder, `inspector train` makes a
new version from it, which is uploaded, shadow-deployed, compared, and promoted while cameras
keep posting. The station then answers with the new version and no request failed."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from inspector.synth import SynthConfig, write_dataset
from tests.lifecycle.conftest import RegServer, start_server, wait_for
from tests.model_factory import make_package
from tests.server.harness import CLI, REPO

pytestmark = [pytest.mark.slow, pytest.mark.train]
SIZE = 96
STATION = "line-1"


def frames(root: Path, seed: int, n_good: int, n_defect: int) -> list[tuple[bytes, str]]:
    """Synthetic parts as (PNG bytes, truth): truth is "good" or the defect type."""
    write_dataset(root, SynthConfig(n_train=n_good, n_test_good=0, n_test_defect=n_defect,
                                    size=SIZE, seed=seed))
    out = [(p.read_bytes(), "good") for p in sorted((root / "train" / "good").glob("*.png"))]
    for kind in ("scratch", "spot", "crack"):
        out += [(p.read_bytes(), kind) for p in sorted((root / "test" / kind).glob("*.png"))]
    return out


def review_by_truth(reg: RegServer, answers: list[tuple[dict[str, Any], str]]) -> int:
    """QA: every fail, and every defect that passed (an escape), labelled with the truth."""
    n = 0
    for answer, truth in answers:
        if answer["verdict"] == "fail" or truth != "good":
            body = {"label": "good"} if truth == "good" else \
                {"label": "defect", "defect_type": truth}
            r = reg.call("POST", f"/v1/inspections/{answer['id']}/review", role="reviewer",
                         json=body)
            assert r.status_code == 201, r.text
            n += 1
    return n


def run(args: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run([*CLI, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_review_export_train_upload_shadow_promote(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    # A first model the line runs today (scores brightness: mediocre on these parts).
    make_package(tmp_path / "srv" / "models", name="parts", version="1", width=SIZE,
                 height=SIZE, threshold=0.62)
    reg = start_server(tmp_path / "srv", {STATION: "parts:1"})
    try:
        _round_trip(reg, tmp_path)
    except BaseException:
        print(f"--- server log ---\n{reg.process.log()[-8000:]}")
        raise
    finally:
        reg.process.stop()


def _round_trip(reg: RegServer, tmp_path: Path) -> None:
    # 1. Production: frames in, verdicts out; QA reviews.
    first = frames(tmp_path / "day1", seed=1, n_good=45, n_defect=5)
    answers = [(reg.inspect(STATION, body).json(), truth) for body, truth in first]
    assert {a["model"]["version"] for a, _ in answers} == {"1"}
    assert review_by_truth(reg, answers) >= 15

    # 2. Export the reviewed data and train version 2 on it.
    env = reg.process.env
    export = tmp_path / "export"
    summary = json.loads(run(["dataset", "export", "--since", "1h", "--out", str(export),
                              "--json"], env, 60).strip().splitlines()[-1])
    assert summary["counts"]["good"] == 45
    assert {k: v for k, v in summary["counts"].items() if k != "good"} == \
        {"crack": 5, "scratch": 5, "spot": 5}
    manifest = json.loads((export / "manifest.json").read_text())
    assert {i["reviewer"] for i in manifest["items"] if i["source"] == "review"} == \
        {"test-reviewer"}
    package = tmp_path / "build" / "parts" / "2"
    run(["train", "--data", str(export), "--out", str(package), "--set", f"image_size={SIZE}"],
        env, 300)
    card = json.loads((package / "card.json").read_text())
    assert (card["name"], card["version"]) == ("parts", "2")

    # 3. Upload it and run it in shadow: the camera's answers stay with version 1.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(package, arcname="2")
    assert reg.upload(buf.getvalue()).status_code == 201
    assert reg.deploy(STATION, "parts:2", "shadow").status_code == 200
    second = frames(tmp_path / "day2", seed=2, n_good=16, n_defect=3)
    answers2 = [(reg.inspect(STATION, body).json(), truth) for body, truth in second]
    assert {a["model"]["version"] for a, _ in answers2} == {"1"}
    review_by_truth(reg, answers2)

    def report() -> dict[str, Any]:
        r = reg.call("GET", f"/v1/stations/{STATION}/shadow-report", role="reviewer")
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    wait_for(lambda: report()["n"] == len(second), timeout=60, what="shadow results")
    rep = report()
    assert rep["shadow_model"] == "parts:2" and rep["active_models"] == ["parts:1"]
    assert rep["flips"]["pass_to_fail"] + rep["flips"]["fail_to_pass"] == \
        round((1 - rep["agreement"]) * rep["n"])
    assert rep["score_correlation"]["spearman"] is not None
    reviewed = rep["reviewed"]
    assert reviewed["n_defect"] == 9 and reviewed["n"] >= 9
    # The retrained model catches the defect types QA named.
    assert reviewed["shadow"]["escapes"] <= 1
    assert reviewed["shadow"]["accuracy"] >= reviewed["active"]["accuracy"]

    # 4. Promote while cameras keep posting: nothing fails, new frames get version 2.
    stop = threading.Event()
    seen: list[tuple[int, str | None]] = []

    def camera(offset: int) -> None:
        with httpx.Client(timeout=60) as client:
            i = offset
            while not stop.is_set():
                r = reg.inspect(STATION, second[i % len(second)][0], client)
                seen.append((r.status_code,
                             r.json()["model"]["version"] if r.status_code == 200 else None))
                i += 1

    threads = [threading.Thread(target=camera, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(seen) >= 20, what="traffic before the swap")
    promoted = reg.call("POST", f"/v1/stations/{STATION}/promote")
    assert promoted.json() == {"station": STATION, "active": "parts:2", "shadow": None,
                               "previous": "parts:1"}
    n_at_promote = len(seen)
    wait_for(lambda: len(seen) >= n_at_promote + 20, what="traffic after the swap")
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert {status for status, _ in seen} == {200}
    assert {v for _, v in seen} == {"1", "2"}
    assert {v for _, v in seen[n_at_promote + 8:]} == {"2"}
    final = reg.inspect(STATION, second[-1][0]).json()
    assert final["model"] == {"name": "parts", "version": "2"} and final["verdict"] == "fail"
