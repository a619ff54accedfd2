"""The hot folder against a real server process, real files and a real watchdog observer."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from inspector.connect import FolderConfig, HotFolder
from tests.connect.conftest import Running, records, wait_for
from tests.server.conftest import Live, defect_frame, good_frame
from tests.server.harness import base_env, run_cli

pytestmark = pytest.mark.slow


def folder(live: Live, tmp_path: Path, **kw: object) -> HotFolder:
    watch = tmp_path / "watch"
    watch.mkdir(exist_ok=True)
    station = kw.pop("station", tmp_path.name[-20:].strip("_-").replace("_", "-"))
    cfg = FolderConfig(watch=watch, station=str(station), url=live.url,
                       key=live.keys["camera"], settle_s=0.3, max_backoff_s=1.0, **kw)  # type: ignore[arg-type]
    return HotFolder(cfg)


def test_files_present_at_start_are_judged_once(live: Live, tmp_path: Path) -> None:
    hot = folder(live, tmp_path, part_id_pattern=r"^(?P<part>[A-Z]+-\d+)_")
    for i in range(3):
        (hot.watch / f"P-{i}_cam1.jpg").write_bytes(good_frame(seed=i))
    (hot.watch / "notes.txt").write_text("not an image")
    assert hot.process_existing() == 3
    done = hot.config.done_dir
    assert sorted(p.name for p in done.iterdir()) == sorted(
        [f"P-{i}_cam1.jpg" for i in range(3)] + [f"P-{i}_cam1.jpg.json" for i in range(3)])
    assert sorted(p.name for p in hot.watch.iterdir()) == ["done", "failed", "notes.txt"]
    side = json.loads((done / "P-1_cam1.jpg.json").read_text())
    assert side["status"] == 200 and side["station"] == hot.config.station
    assert side["part_id"] == "P-1" and side["answer"]["part_id"] == "P-1"
    assert side["answer"]["verdict"] == "pass" and side["sent_at"]
    recs = records(live, hot.config.station)
    assert sorted(str(r["part_id"]) for r in recs) == ["P-0", "P-1", "P-2"]


def test_a_file_written_slowly_is_judged_when_complete(live: Live, tmp_path: Path) -> None:
    hot = folder(live, tmp_path)
    frame = defect_frame(seed=3)
    target = hot.watch / "slow.png"
    with Running(hot.run):
        with target.open("wb") as f:
            step = len(frame) // 5 + 1
            for at in range(0, len(frame), step):
                f.write(frame[at:at + step])
                f.flush()
                time.sleep(0.15)  # shorter than the settle time: one growing file
        wait_for(lambda: (hot.config.done_dir / "slow.png.json").exists())
    assert (hot.config.done_dir / "slow.png").read_bytes() == frame
    assert not any(hot.config.failed_dir.iterdir())  # no truncated prefix was sent
    (rec,) = records(live, hot.config.station)
    image = httpx.get(f"{live.url}/v1/inspections/{rec['id']}/image",
                      headers=live.auth("reviewer"), timeout=10)
    assert image.content == frame  # the server got the whole file, not a prefix
    assert rec["part_id"] == "slow" and rec["frame_width"] == 128


def test_renamed_in_and_corrupt_files(live: Live, tmp_path: Path) -> None:
    hot = folder(live, tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "moved.jpg").write_bytes(good_frame(seed=5))
    with Running(hot.run):
        (hot.watch / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
        (staging / "moved.jpg").rename(hot.watch / "moved.jpg")
        wait_for(lambda: (hot.config.failed_dir / "bad.png.json").exists()
                 and (hot.config.done_dir / "moved.jpg.json").exists())
    side = json.loads((hot.config.failed_dir / "bad.png.json").read_text())
    assert side["status"] == 400 and side["error"]["error"]["status"] == 400
    assert (hot.config.failed_dir / "bad.png").exists()
    assert len(records(live, hot.config.station)) == 1


def test_a_restart_does_not_judge_again(live: Live, tmp_path: Path) -> None:
    hot = folder(live, tmp_path)
    for name in ("a.jpg", "b.jpg"):
        (hot.watch / name).write_bytes(good_frame(seed=len(name) + ord(name[0])))
    assert hot.process_existing() == 2
    # a stop between the sidecar and the move: the file is back in the folder, its sidecar
    # (the acknowledged verdict) in done/
    done = hot.config.done_dir
    shutil.move(done / "a.jpg", hot.watch / "a.jpg")
    again = folder(live, tmp_path, station=hot.config.station)
    assert again.process_existing() == 0
    assert (done / "a.jpg").exists() and not (hot.watch / "a.jpg").exists()
    # the same name with new bytes is a new frame: judged, kept apart from the first
    (hot.watch / "b.jpg").write_bytes(defect_frame(seed=9))
    assert again.process_existing() == 1
    assert (done / "b.1.jpg").read_bytes() == defect_frame(seed=9)
    assert len(records(live, hot.config.station)) == 3


def test_the_file_waits_while_the_server_is_down(live: Live, tmp_path: Path) -> None:
    hot = folder(live, tmp_path)
    live.process.stop()
    try:
        with Running(hot.run):
            (hot.watch / "early.jpg").write_bytes(good_frame(seed=11))
            time.sleep(1.2)
            assert (hot.watch / "early.jpg").exists()
            assert not any(hot.config.done_dir.iterdir())
            live.process.start()
            wait_for(lambda: (hot.config.done_dir / "early.jpg.json").exists(), 30)
    finally:
        if live.process.proc is None or live.process.proc.poll() is not None:
            live.process.start()
    assert len(records(live, hot.config.station)) == 1


def test_cli_refuses_a_bad_pattern(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data", INSPECTOR_CAMERA_KEY="k")
    out = run_cli(["connect", "folder", "--watch", str(tmp_path), "--station", "s1",
                   "--part-id-pattern", "(unclosed"], env, check=False)
    assert out.returncode == 2 and out.stderr.startswith("error: --part-id-pattern"), out.stderr
