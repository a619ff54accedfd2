"""Issue 14's acceptance run of the hot folder: 200 files written in chunks (some arrive
slowly, some are corrupt) into a folder watched by the real `inspector connect folder`
process, which is killed (SIGKILL, as a power cut would) mid-run and started again. Every
complete image is judged exactly once, the corrupt ones land in failed/ with the reason, and
nothing is lost or repeated."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.connect.conftest import records, wait_for
from tests.server.conftest import Live, defect_frame, good_frame
from tests.server.harness import CLI, REPO, base_env

pytestmark = pytest.mark.slow

N_FILES = 200
N_CORRUPT = 12


def corpus() -> dict[str, bytes]:
    """200 distinct files: images (JPEG passes, PNG defects) and corrupt ones."""
    rng = random.Random(14)
    files: dict[str, bytes] = {}
    corrupt = set(rng.sample(range(N_FILES), N_CORRUPT))
    for i in range(N_FILES):
        if i in corrupt:
            whole = good_frame(seed=i)
            # a truncated JPEG, random bytes, an empty PNG body: what a faulty camera writes
            body = [whole[: len(whole) // 3], os.urandom(2000), b"\x89PNG\r\n\x1a\n"][i % 3]
            files[f"bad-{i:03d}.{'png' if i % 3 == 2 else 'jpg'}"] = body
        elif i % 4 == 0:
            files[f"part-{i:03d}.png"] = defect_frame(seed=i)
        else:
            files[f"part-{i:03d}.jpg"] = good_frame(seed=i)
    return files


def write_all(watch: Path, files: dict[str, bytes], stop: threading.Event) -> None:
    """Each file in three chunks; every fifth one slowly (a partial file sits in the folder
    for longer than a settle check), every seventh written elsewhere and renamed in."""
    staging = watch.parent / "staging"
    staging.mkdir(exist_ok=True)
    for n, (name, data) in enumerate(files.items()):
        if stop.is_set():
            return
        renamed = n % 7 == 3
        target = (staging if renamed else watch) / name
        step = len(data) // 3 + 1
        with target.open("wb") as f:
            for at in range(0, len(data), step):
                f.write(data[at:at + step])
                f.flush()
                time.sleep(0.12 if n % 5 == 0 else 0.0)
        if renamed:
            target.rename(watch / name)
        time.sleep(0.01)


def start_connector(live: Live, watch: Path, station: str, log: Path) -> subprocess.Popen[bytes]:
    env = base_env(watch.parent / "cli-data", INSPECTOR_CAMERA_KEY=live.keys["camera"])
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CLI, "connect", "folder", "--watch", str(watch), "--station", station,
             "--url", live.url, "--settle", "0.3"],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def judged(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.endswith(".json")}


def test_200_files_with_a_kill_mid_run(live: Live, tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    station = "accept-200"
    files = corpus()
    good = {n for n in files if not n.startswith("bad-")}
    log = tmp_path / "connector.log"
    stop = threading.Event()
    writer = threading.Thread(target=write_all, args=(watch, files, stop), daemon=True)
    proc = start_connector(live, watch, station, log)
    writer.start()
    try:
        done, failed = watch / "done", watch / "failed"
        wait_for(lambda: done.is_dir() and len(judged(done)) >= 60, 120)
        proc.send_signal(signal.SIGKILL)  # no chance to finish the file in hand
        proc.wait(timeout=10)
        time.sleep(0.5)  # files keep arriving while it is down
        proc = start_connector(live, watch, station, log)
        writer.join(timeout=180)
        assert not writer.is_alive()
        wait_for(lambda: len(judged(done)) + len(judged(failed)) == N_FILES, 180)
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert judged(done) == good, log.read_text()[-3000:]
    assert judged(failed) == set(files) - good
    assert sorted(p.name for p in watch.iterdir()) == ["done", "failed"]
    for name in good:  # the whole file reached done/, not a prefix
        assert (done / name).read_bytes() == files[name]
    for name in set(files) - good:
        side = json.loads((failed / f"{name}.json").read_text())
        assert side["status"] == 400, side
        assert side["error"]["error"]["message"], side
    recs = records(live, station)
    part_ids = [str(r["part_id"]) for r in recs]
    assert len(part_ids) == len(set(part_ids)) == len(good)  # once each: none lost, none twice
    assert set(part_ids) == {Path(n).stem for n in good}
    sidecars = {n: json.loads((done / f"{n}.json").read_text()) for n in good}
    assert {s["answer"]["id"] for s in sidecars.values()} == {r["id"] for r in recs}
