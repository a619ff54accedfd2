"""`inspector dataset export`: which reviewed inspections land in which folder, the manifests,
and the command line (on SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import update
from typer.testing import CliRunner

from inspector.cli.dataset import export_cmd, parse_time
from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database
from inspector.store.export import ExportQuery, folder_for, write_export
from inspector.store.inspections import NewInspection, add_review, new_id, record_batch
from inspector.store.models import Review
from tests.store.test_store import make_record

NOW = datetime.now(UTC)


def stored(artifacts: ArtifactStore, verdict: str, station: str = "s1",
           when: datetime | None = None, image: bool = True, ext: str = "PNG") -> NewInspection:
    rec = make_record(station=station, verdict=verdict, id=new_id(), created_at=when or NOW)
    if image:
        saved = artifacts.save(rec.id, rec.created_at, f"frame-{rec.id}".encode(), ext, b"heat")
        rec = replace(rec, image_key=saved.image_key, heatmap_key=saved.heatmap_key)
    return rec


@pytest.fixture
def scene(db: Database, tmp_path: Path) -> dict[str, Any]:
    """A mix of reviewed and unreviewed inspections with stored frames."""
    art = ArtifactStore(tmp_path / "artifacts")
    r: dict[str, NewInspection] = {
        "scratch": stored(art, "fail"),
        "untyped": stored(art, "fail", ext="JPEG"),
        "overturned": stored(art, "fail"),
        "changed_mind": stored(art, "fail"),
        "escape": stored(art, "pass"),
        "unreviewed_fail": stored(art, "fail"),
        "gone": stored(art, "fail"),
        "old": stored(art, "fail", when=NOW - timedelta(days=30)),
        "other_station": stored(art, "fail", station="s2"),
        "weird_type": stored(art, "fail"),
        "pass_no_image": stored(art, "pass", image=False),
    }
    passes = [stored(art, "pass") for _ in range(5)]
    record_batch(db, [*r.values(), *passes], [])
    review = {
        "scratch": ("defect", "scratch"), "untyped": ("defect", None),
        "overturned": ("good", None), "changed_mind": ("defect", "spot"),
        "escape": ("defect", "spot"), "gone": ("defect", "crack"), "old": ("defect", "crack"),
        "other_station": ("defect", "crack"), "weird_type": ("defect", "dent"),
    }
    for key, (label, dtype) in review.items():
        add_review(db, r[key].id, label=label, defect_type=dtype, reviewer=f"qa-{key}")  # type: ignore[arg-type]
    add_review(db, r["changed_mind"].id, label="good", reviewer="qa-lead")
    with db.session() as s:  # a type that did not come through the API's validation
        s.execute(update(Review).where(Review.inspection_id == r["weird_type"].id)
                  .values(defect_type="../../etc"))
    gone = r["gone"].image_key
    assert gone is not None
    art.path(gone).unlink()
    return {"art": art, "r": r, "passes": passes}


def test_export_layout_manifest_and_bytes(db: Database, scene: dict[str, Any],
                                          tmp_path: Path) -> None:
    art, r, passes = scene["art"], scene["r"], scene["passes"]
    out = tmp_path / "export"
    q = ExportQuery(since=NOW - timedelta(days=1), station="s1", sample_passes=3, seed=1)
    result = write_export(db, art, q, out)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}

    def f(key: str, folder: str, ext: str = "png") -> str:
        return f"{folder}/{r[key].id}.{ext}"

    expected_reviewed = {f("scratch", "scratch"), f("untyped", "defect", "jpg"),
                         f("overturned", "good"), f("changed_mind", "good"),
                         f("escape", "spot"), f("weird_type", "defect")}
    assert expected_reviewed <= files
    sampled = {p for p in files if p.startswith("good/")} - {f("overturned", "good"),
                                                            f("changed_mind", "good")}
    assert len(sampled) == 3 and sampled <= {f"good/{p.id}.png" for p in passes}
    assert files == expected_reviewed | sampled | {"manifest.json", "manifest.csv"}
    assert (out / f("scratch", "scratch")).read_bytes() == f"frame-{r['scratch'].id}".encode()
    assert result.counts == {"defect": 2, "good": 5, "scratch": 1, "spot": 1}
    assert result.missing == [r["gone"].id]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == result.counts and manifest["query"]["station"] == "s1"
    by_id = {i["inspection_id"]: i for i in manifest["items"]}
    assert by_id[r["changed_mind"].id]["reviewer"] == "qa-lead"  # the latest review wins
    escape = by_id[r["escape"].id]
    assert (escape["label"], escape["defect_type"], escape["verdict"], escape["source"]) == \
        ("defect", "spot", "pass", "review")
    sample = by_id[sorted(sampled)[0].split("/")[1].split(".")[0]]
    assert sample["source"] == "sampled_pass" and sample["reviewer"] is None
    assert sample["source_file"].endswith(".png") and sample["station"] == "s1"
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {row["inspection_id"] for row in rows} == set(by_id)
    assert set(rows[0]) >= {"inspection_id", "label", "defect_type", "reviewer", "reviewed_at",
                            "station", "source_file", "file"}

    with pytest.raises(FileExistsError):
        write_export(db, art, q, out)
    assert not list(tmp_path.rglob(".*partial"))  # the staging folder is gone


def test_folder_names_never_come_from_free_text() -> None:
    assert folder_for("good", "scratch") == "good"
    assert folder_for("defect", "scratch") == "scratch"
    for bad in (None, "", "../x", "Scratch", "good", "a/b", ".hidden", "x" * 70):
        assert folder_for("defect", bad) == "defect"


def test_parse_time() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_time("7d", now) == now - timedelta(days=7)
    assert parse_time("90m", now) == now - timedelta(minutes=90)
    assert parse_time("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_time("2026-11-01T08:00+01:00") == datetime(2026, 11, 1, 7, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("last tuesday")


def test_cli_exports_from_the_settings_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = Database(f"sqlite:///{data / 'inspector.db'}")
    db.migrate()
    art = ArtifactStore(data / "artifacts")
    recs = [stored(art, "fail"), stored(art, "pass")]
    record_batch(db, recs, [])
    add_review(db, recs[0].id, label="defect", defect_type="scratch", reviewer="qa")
    db.dispose()
    runner = CliRunner()
    out = tmp_path / "ds"
    args = ["--since", "1d", "--out", str(out), "--data-dir", str(data), "--json"]
    res = runner.invoke(_app(), args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["counts"] == {"good": 1, "scratch": 1}
    again = runner.invoke(_app(), args)
    assert again.exit_code == 2 and "not empty" in again.output
    empty = runner.invoke(_app(), ["--since", "2020-01-01", "--until", "2020-02-01",
                                   "--out", str(tmp_path / "none"), "--data-dir", str(data)])
    assert empty.exit_code == 1 and "nothing to export" in empty.output
    bad = runner.invoke(_app(), ["--since", "soon", "--out", str(tmp_path / "x"),
                                 "--data-dir", str(data)])
    assert bad.exit_code == 2 and "not a time" in bad.output


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(export_cmd)
    return app


def test_export_through_symlinks(db: Database, scene: dict[str, Any], tmp_path: Path) -> None:
    """A data folder reached through a link (the artifacts live on another volume) and an
    export target that is a link to an empty folder: the export lands in the link's target."""
    real_art = scene["art"].root
    linked_art = tmp_path / "linked-artifacts"
    linked_art.symlink_to(real_art, target_is_directory=True)
    target = tmp_path / "volume" / "exports"
    target.mkdir(parents=True)
    out = tmp_path / "export-link"
    out.symlink_to(target, target_is_directory=True)
    q = ExportQuery(since=NOW - timedelta(days=1), station="s1", sample_passes=0, seed=1)
    result = write_export(db, ArtifactStore(linked_art), q, out)
    assert out.is_symlink() and out.resolve() == target.resolve()
    written = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert "manifest.json" in written and f"scratch/{scene['r']['scratch'].id}.png" in written
    assert result.counts["scratch"] == 1
    assert not list(tmp_path.rglob(".*partial"))  # the staging folder is gone
