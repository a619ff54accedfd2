"""The stream adapter against a real server process, real video files written with OpenCV, a
local MJPEG-over-HTTP camera stand-in and the real Mosquitto."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from inspector.connect.motion import MotionTrigger, Roi
from inspector.connect.mqtt import MqttTrigger, check_topic_filter, part_id_of
from inspector.connect.source import SourceSpec
from inspector.connect.stream import (
    Capture,
    PartIds,
    SendQueue,
    StreamAdapter,
    StreamConfig,
    TriggerOptions,
    make_trigger,
)
from inspector.connect.triggers import Frame, RateTrigger, Trigger
from tests.connect.conftest import Running, records, wait_for
from tests.connect.mjpeg import MjpegCamera
from tests.server.conftest import Live
from tests.server.harness import CLI, REPO, base_env, reachable, run_cli

W, H = 160, 120
ROI = Roi(60, 30, 80, 70)
REST_X, PART_Y, SIDE = 80, 45, 40  # where a part comes to rest: inside ROI


def scene(n: int, part_x: int | None = None, *, part_y: int = PART_Y,
          level: int = 40) -> np.ndarray:
    """A dark, noisy background (sensor noise differs per frame `n`) with an optional bright
    square part whose left edge is at `part_x`."""
    rng = np.random.default_rng(n)
    img = (level + rng.integers(0, 8, size=(H, W, 3))).astype(np.uint8)
    if part_x is not None:
        img[part_y:part_y + SIDE, max(0, part_x):max(0, part_x + SIDE)] = 220
    return img


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def station() -> str:
    return f"st-{uuid.uuid4().hex[:8]}"


def adapter(live: Live, source: SourceSpec, trigger: Trigger, **kw: object) -> StreamAdapter:
    cfg = StreamConfig(source=source, station=str(kw.pop("station", station())),
                       server=live.url, key=live.keys["camera"], trigger=trigger,
                       max_backoff_s=1.0, **kw)  # type: ignore[arg-type]
    return StreamAdapter(cfg)


def balanced(a: StreamAdapter) -> bool:
    """Every picked frame was posted, refused or dropped."""
    c = a.counters
    return c.triggered == c.posted + c.refused + c.dropped


# -- motion, rate, refusals: video files -----------------------------------------------------

def parts_video(path: Path) -> Path:
    """Three parts slide into the ROI and rest there for 8 frames; a square that appears
    outside the ROI and a part that crosses the ROI without stopping must not be taken."""
    frames: list[tuple[int | None, int]] = [(None, PART_Y)] * 5
    for _ in range(3):
        frames += [(40, PART_Y), (60, PART_Y)] + [(REST_X, PART_Y)] * 8 + [(None, PART_Y)] * 5
    frames += [(0, 0)] * 6 + [(None, PART_Y)] * 3  # outside the ROI (top left)
    frames += [(x, PART_Y) for x in (50, 70, 90, 110, 130)] + [(None, PART_Y)] * 4
    return write_video(path, [scene(i, x, part_y=y) for i, (x, y) in enumerate(frames)])


def test_motion_takes_one_frame_per_part_at_rest(live: Live, tmp_path: Path) -> None:
    a = adapter(live, SourceSpec(file=parts_video(tmp_path / "parts.avi")),
                MotionTrigger(ROI), part_id="{station}-{seq}")
    a.run(threading.Event())  # a file: runs to its end
    c = a.counters
    assert (c.read, c.triggered, c.posted, c.refused, c.dropped) == (68, 3, 3, 0, 0)
    recs = records(live, a.config.station)
    assert sorted(str(r["part_id"]) for r in recs) == [f"{a.config.station}-{i}"
                                                       for i in (1, 2, 3)]
    for rec in recs:  # the frame taken shows the part where it rests, not on its way in
        image = _image(live, str(rec["id"]))
        assert image[PART_Y + 5:PART_Y + SIDE - 5, REST_X + 5:REST_X + SIDE - 5].mean() > 180
        assert image[PART_Y + 5:PART_Y + SIDE - 5, 45:REST_X - 5].mean() < 80


def _image(live: Live, inspection_id: str) -> np.ndarray:
    r = httpx.get(f"{live.url}/v1/inspections/{inspection_id}/image",
                  headers=live.auth("reviewer"), timeout=10)
    assert r.status_code == 200, r.text
    return cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)


def test_rate_trigger_from_the_command_line(live: Live, tmp_path: Path) -> None:
    video = write_video(tmp_path / "line.avi", [scene(i) for i in range(40)])  # 4 s at 10 fps
    st = station()
    env = base_env(tmp_path / "cli", INSPECTOR_CAMERA_KEY=live.keys["camera"])
    out = run_cli(["connect", "stream", "--file", str(video), "--station", st, "--trigger",
                   "rate:2", "--server", live.url, "--part-id", "{station}-{seq}"], env)
    assert out.stderr.strip().splitlines()[-1] == (
        "stopped; read 40, triggered 8, posted 8, refused 0, dropped 0, reconnects 0")
    recs = records(live, st)
    assert sorted(str(r["part_id"]) for r in recs) == sorted(f"{st}-{i}" for i in range(1, 9))
    assert {r["frame_width"] for r in recs} == {W}


def test_refused_frames_are_counted_not_retried(live: Live, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8) for _ in range(3)]
    a = adapter(live, SourceSpec(file=write_video(tmp_path / "noise.avi", noise)),
                RateTrigger(100), jpeg_quality=100)  # each JPEG is over the server's limit
    a.run(threading.Event())  # a file: runs to its end
    c = a.counters
    assert (c.triggered, c.posted, c.refused, c.dropped) == (3, 0, 3, 0)
    assert records(live, a.config.station) == []


# -- live streams: reconnects, outages, MQTT, signals -----------------------------------------

def test_reconnects_when_the_camera_drops(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    level = {"now": 40}
    camera = MjpegCamera(lambda n: scene(n, level=level["now"])).start()
    a = adapter(live, SourceSpec(url=camera.url), RateTrigger(4))
    caplog.set_level(logging.INFO)
    try:
        with Running(a.run):
            wait_for(lambda: a.counters.posted >= 2, 30)
            camera.stop()
            wait_for(lambda: a.source.outage is not None and a.source.outage.tries >= 2, 30)
            level["now"] = 160  # frames after the reconnect are told apart by their score
            camera.start()
            wait_for(lambda: sum(float(str(r["score"])) > 0.5
                                 for r in records(live, a.config.station)) >= 2, 30)
    finally:
        camera.stop()
    assert a.counters.reconnects == 1 and balanced(a)
    recs = records(live, a.config.station)
    assert len(recs) == a.counters.posted
    assert sum(float(str(r["score"])) < 0.3 for r in recs) >= 2  # before the drop
    lost = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    back = [r for r in caplog.records if "frames again" in r.getMessage()]
    assert len(lost) == 1 and len(back) == 1  # logged once per outage, not once per try


def test_frames_wait_while_the_server_is_down_and_the_oldest_are_dropped(
        live: Live) -> None:
    with MjpegCamera(lambda n: scene(n)) as camera:
        a = adapter(live, SourceSpec(url=camera.url), RateTrigger(5), queue_size=2)
        with Running(a.run):
            wait_for(lambda: a.counters.posted >= 1, 30)
            live.process.stop()
            try:
                wait_for(lambda: a.counters.dropped >= 3, 30)
            finally:
                live.process.start()
            posted = a.counters.posted
            wait_for(lambda: a.counters.posted >= posted + 3, 60)
    assert balanced(a)
    assert len(records(live, a.config.station)) == a.counters.posted


@pytest.mark.mqtt
def test_mqtt_messages_take_the_next_frames(live: Live) -> None:
    if not reachable("127.0.0.1", 1883):
        pytest.skip("no MQTT broker at 127.0.0.1:1883 (start mosquitto)")
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    trigger = MqttTrigger("mqtt://127.0.0.1:1883", f"{prefix}/+/trigger")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", 1883)
    pub.loop_start()
    with MjpegCamera(lambda n: scene(n)) as camera:
        a = adapter(live, SourceSpec(url=camera.url), trigger, part_id="{station}-m{seq}")
        with Running(a.run):
            wait_for(trigger.subscribed.is_set)
            for payload in (b'{"part_id": "A17"}', b"B-22\n", b"", b'{"part_id": "x\\u0000y"}'):
                pub.publish(f"{prefix}/cam1/trigger", payload, qos=1).wait_for_publish(5)
            wait_for(lambda: a.counters.posted == 4, 30)
    pub.loop_stop()
    pub.disconnect()
    st = a.config.station
    assert sorted(str(r["part_id"]) for r in records(live, st)) == sorted(
        ["A17", "B-22", f"{st}-m3", f"{st}-m4"])
    assert a.counters.triggered == 4 and a.counters.read > 4


def test_sigterm_stops_with_a_summary(live: Live, tmp_path: Path) -> None:
    st = station()
    env = base_env(tmp_path / "cli", INSPECTOR_CAMERA_KEY=live.keys["camera"])
    with MjpegCamera(lambda n: scene(n)) as camera:
        proc = subprocess.Popen([*CLI, "connect", "stream", "--url", camera.url, "--station", st,
                                 "--trigger", "rate:5", "--server", live.url], env=env,
                                cwd=REPO, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(records(live, st)) >= 2, 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("stopped; read ") and "reconnects 0" in summary, err


# -- bad arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--device", "0", "--trigger", "motion", "--roi", "10,10,50"],
     "error: --roi '10,10,50' is not x,y,w,h"),
    (["--device", "0", "--trigger", "photocell"], "error: unknown trigger 'photocell'"),
    (["--device", "97", "--trigger", "rate:1"], "error: cannot open camera device 97"),
    (["--device", "0", "--trigger", "mqtt:a/#/b"], "error: MQTT topic 'a/#/b'"),
])
def test_cli_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    env = base_env(tmp_path, INSPECTOR_CAMERA_KEY="k")
    out = run_cli(["connect", "stream", "--station", "s1", *args], env, check=False)
    assert out.returncode == 2 and out.stderr.startswith(message), out.stderr
    assert "Traceback" not in out.stderr


def test_folder_without_watchdog_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['watchdog'] = None; "  # as if it were not installed
            "from inspector.cli import main; main()")
    out = subprocess.run([sys.executable, "-c", code, "connect", "folder", "--watch",
                          str(tmp_path), "--station", "s1"], env=base_env(
                              tmp_path, INSPECTOR_CAMERA_KEY="k"), cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("error: the hot folder needs the watchdog package: "
                                  "pip install 'inspector[folder]'")


# -- the parts, without a server ---------------------------------------------------------------

def test_roi_trigger_and_part_id_arguments() -> None:
    assert Roi.parse(" 1, 2,30,40") == Roi(1, 2, 30, 40)
    for bad in ("1,2,3", "-1,2,3,4", "a,b,c,d", "1,2,0,4", ""):
        with pytest.raises(ValueError, match="--roi"):
            Roi.parse(bad)
    opts = TriggerOptions()
    for bad in ("rate:0", "rate:", "rate:nan", "rate:1e9", "motion:x", "opcua:ns=2", "mqtt:"):
        with pytest.raises(ValueError):
            make_trigger(bad, opts)
    with pytest.raises(ValueError, match="--roi"):
        make_trigger("rate:1", TriggerOptions(roi=Roi(0, 0, 1, 1)))
    assert isinstance(make_trigger("rate:2.5", opts), RateTrigger)
    assert PartIds("{station}-{seq:04d}", "s1").render(7) == "s1-0007"
    for bad in ("{station.__class__}", "{0}", "{station[0]}", "{seq", "x" * 129, "{station}\x01"):
        with pytest.raises(ValueError, match="--part-id"):
            PartIds(bad, "s1")


def test_trigger_payloads_and_topics() -> None:
    assert part_id_of(b'{"part_id": "A17"}') == "A17"
    assert part_id_of(b'{"part_id": 1234}') == "1234"
    assert part_id_of(b" B-22 \r\n") == "B-22"
    for none in (b"", b"{}", b'{"part_id": null}', b"{not json", b"\xff\xfe",
                 b'{"part_id": true}', b"a\x00b", b"x" * 129, b'{"part_id": ["a"]}'):
        assert part_id_of(none) is None, none
    assert check_topic_filter("line1/+/trigger") == "line1/+/trigger"
    for bad in ("", "a/#/b", "a/b+", "a#", "a/\x00"):
        with pytest.raises(ValueError):
            check_topic_filter(bad)


def test_rate_follows_the_source_clock() -> None:
    rate = RateTrigger(2)
    image = np.zeros((4, 4, 3), np.uint8)
    times = [0.0, 0.1, 0.5, 0.9, 1.0, 1.2, 5.0, 5.3, 5.5]  # a gap between 1.2 and 5.0
    taken = [t for t in times if rate.check(Frame(image, t, 0.0)) is not None]
    assert taken == [0.0, 0.5, 1.0, 5.0, 5.5]


def test_live_queue_drops_the_oldest() -> None:
    q = SendQueue(2, wait_for_room=False)
    stop = threading.Event()
    items = [Capture(np.zeros((2, 2, 3), np.uint8), f"p{i}", f"frame {i}", f"k{i}")
             for i in range(4)]
    assert q.put(items[0], stop) is None and q.put(items[1], stop) is None
    assert q.put(items[2], stop) is items[0] and q.put(items[3], stop) is items[1]
    q.close()
    assert [q.get(stop), q.get(stop), q.get(stop)] == [items[2], items[3], None]


def test_motion_starts_over_when_the_frame_size_changes() -> None:
    motion = MotionTrigger(None, settle_s=0.0)
    sizes = [(120, 160)] * 3 + [(240, 320)] * 3  # a camera reconnected at another resolution
    fired = [motion.check(Frame(np.full((*hw, 3), 40, np.uint8), i / 10, 0.0))
             for i, hw in enumerate(sizes)]
    assert fired == [None] * 6
    part = scene(99, REST_X)
    assert motion.check(Frame(cv2.resize(part, (320, 240)), 0.6, 0.0)) is None  # arriving
    assert motion.check(Frame(cv2.resize(part, (320, 240)), 0.7, 0.0)) is not None  # at rest
