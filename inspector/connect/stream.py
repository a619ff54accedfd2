"""The stream adapter: frames from a camera stream, file or device; a trigger picks some; each
picked frame is sent as JPEG to the server's POST /v1/inspect.

Two threads: the reader (the caller's) reads every frame and asks the trigger about it; the
sender posts picked frames one at a time, retrying while the server is unreachable. Between
them a bounded queue: from a live source, a frame picked while the queue is full pushes out
the oldest waiting one (counted as dropped: the line does not wait, and the newest part is
the one still in front of the camera); from a file the reader waits instead, so nothing is
dropped. On stop, frames still waiting are dropped too. Waiting frames are kept decoded (the
sender encodes the JPEG, so the reader never falls behind the camera): at 1080p, 6 MB each.
"""

from __future__ import annotations

import collections
import logging
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspector.connect.client import ConnectError, InspectClient
from inspector.connect.motion import MotionTrigger, Roi
from inspector.connect.mqtt import MqttTrigger
from inspector.connect.source import FrameSource, SourceSpec
from inspector.connect.triggers import (
    PART_ID_MAX,
    Counters,
    EventTrigger,
    Fire,
    Frame,
    RateTrigger,
    Trigger,
)
from inspector.core.errors import InvalidTextError
from inspector.core.names import NAME_RE, utcnow
from inspector.core.text import check_text

log = logging.getLogger(__name__)

PART_ID_FIELDS = ("station", "seq", "time")


@dataclass(frozen=True)
class TriggerOptions:
    """What the triggers may need besides their own `kind:argument`."""

    roi: Roi | None = None
    settle_s: float = 0.3
    motion_threshold: float = 0.05
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    opcua_url: str | None = None
    opcua_user: str | None = None
    opcua_password: str | None = field(default=None, repr=False)
    max_backoff_s: float = 30.0


def _rate(arg: str, opts: TriggerOptions) -> Trigger:
    try:
        fps = float(arg)
    except ValueError:
        fps = 0.0
    if not 0 < fps <= 1000:
        raise ValueError(f"rate:{arg}: the rate is frames per second, over 0 and at most "
                         "1000 (e.g. rate:2)")
    return RateTrigger(fps)


def _motion(arg: str, opts: TriggerOptions) -> Trigger:
    if arg:
        raise ValueError(f"motion:{arg}: motion takes no argument; the region is --roi")
    return MotionTrigger(opts.roi, threshold=opts.motion_threshold, settle_s=opts.settle_s)


def _mqtt(arg: str, opts: TriggerOptions) -> Trigger:
    return MqttTrigger(opts.mqtt_url, arg)


def _opcua(arg: str, opts: TriggerOptions) -> Trigger:
    try:
        from inspector.connect.opcua import OpcUaLogin, OpcUaTrigger
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "asyncua":
            raise
        raise ValueError("the opcua trigger needs the OPC UA library (asyncua): "
                         "pip install 'inspector[opcua]'") from exc
    if opts.opcua_url is None:
        raise ValueError(f"opcua:{arg[:200]} needs the server: --opcua-url "
                         "opc.tcp://host:4840/path")
    login = OpcUaLogin(opts.opcua_url, opts.opcua_user, opts.opcua_password)
    return OpcUaTrigger(arg, login, max_backoff_s=opts.max_backoff_s)


#: `--trigger KIND[:ARG]` -> the trigger.
TRIGGERS: dict[str, Callable[[str, TriggerOptions], Trigger]] = {
    "rate": _rate, "motion": _motion, "mqtt": _mqtt, "opcua": _opcua}


def make_trigger(spec: str, opts: TriggerOptions) -> Trigger:
    """`rate:2`, `motion`, `mqtt:line1/cam1/trigger`, `opcua:ns=2;s=PartPresent` -> the
    trigger; ValueError otherwise."""
    kind, _, arg = spec.partition(":")
    if kind not in TRIGGERS:
        raise ValueError(f"unknown trigger {spec!r}: use rate:<fps>, motion, mqtt:<topic> "
                         "or opcua:<node id>")
    if opts.roi is not None and kind != "motion":
        raise ValueError("--roi is the region the motion trigger watches; other triggers "
                         "send the whole frame")
    return TRIGGERS[kind](arg, opts)


class PartIds:
    """The part id of a frame the line did not name: a template of {station}, {seq} (the
    frame's number in this run, from 1) and {time} (UTC, e.g. 20250101T120000.123Z)."""

    def __init__(self, template: str, station: str) -> None:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"--part-id {template!r}: {exc}") from exc
        unknown = [f for f in fields if f not in PART_ID_FIELDS]
        if unknown:
            raise ValueError(f"--part-id {template!r}: unknown field {unknown[0]!r}; use "
                             "{station}, {seq} and {time}")
        self.template = template
        self.station = station
        try:
            check_text(self.render(1), "--part-id", max_length=PART_ID_MAX)
        except (ValueError, InvalidTextError) as exc:
            raise ValueError(f"--part-id {template!r}: {exc}") from exc

    def render(self, seq: int) -> str:
        time = utcnow().strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
        return self.template.format(station=self.station, seq=seq, time=time)


@dataclass(frozen=True)
class Capture:
    """A picked frame on its way to the server (encoded by the sender: the reader stays
    free for the next frame)."""

    image: np.ndarray
    part_id: str
    label: str
    key: str  # Idempotency-Key: a retry after a lost answer gets the first verdict back


class SendQueue:
    """Bounded hand-over from reader to sender: drop-oldest when live, wait when a file."""

    def __init__(self, size: int, *, wait_for_room: bool) -> None:
        self.items: collections.deque[Capture] = collections.deque()
        self.size = size
        self.wait_for_room = wait_for_room
        self.closed = False
        self.cond = threading.Condition()

    def put(self, item: Capture, stop: threading.Event) -> Capture | None:
        """Queue `item`; returns the one that had to make room (or `item` itself when stopped
        while waiting for room), else None."""
        with self.cond:
            while self.wait_for_room and len(self.items) >= self.size:
                if stop.is_set():
                    return item
                self.cond.wait(0.2)
            pushed = self.items.popleft() if len(self.items) >= self.size else None
            self.items.append(item)
            self.cond.notify_all()
            return pushed

    def get(self, stop: threading.Event) -> Capture | None:
        """The oldest item; None once closed and empty, or when stopped."""
        with self.cond:
            while not self.items and not self.closed and not stop.is_set():
                self.cond.wait(0.2)
            if stop.is_set() or not self.items:
                return None
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def close(self) -> None:
        """No more items will come: `get` answers None once the queue is empty."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def drain(self) -> list[Capture]:
        """Takes every item still waiting (at a stop)."""
        with self.cond:
            left, self.items = list(self.items), collections.deque()
            return left


@dataclass(frozen=True)
class StreamConfig:
    """Where frames come from, which are picked, and where they go."""

    source: SourceSpec
    station: str
    server: str
    key: str
    trigger: Trigger
    part_id: str = "{station}-{time}"
    queue_size: int = 8
    jpeg_quality: int = 90
    max_backoff_s: float = 30.0
    stats_every_s: float = 60.0
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.station):
            raise ValueError(f"--station {self.station!r}: use letters, digits, '_', '.', "
                             "'-' (up to 64, starting with a letter or digit)")
        if not self.server.startswith(("http://", "https://")):
            raise ValueError(f"--server {self.server!r} must look like http://host:8000")


class StreamAdapter:
    """Runs one stream against one station until stopped, or until a file source ends."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.counters = Counters()
        self.part_ids = PartIds(config.part_id, config.station)
        self.source = FrameSource(config.source, self.counters,
                                  max_backoff_s=config.max_backoff_s)
        self.queue = SendQueue(config.queue_size, wait_for_room=not config.source.live)
        self.client = InspectClient(config.server, config.key, config.station,
                                    timeout_s=config.timeout_s,
                                    max_backoff_s=config.max_backoff_s)
        self.error: ConnectError | None = None
        self.seq = 0
        self.run_id = uuid.uuid4().hex[:16]  # with the frame number: each frame's request key

    def run(self, stop: threading.Event) -> None:
        """Read, pick and send until `stop` is set or a file ends (then every picked frame is
        sent first). ConnectError when the source, the server or the trigger's side (an OPC UA
        login) refuses the setup; `stop` is set then too. Opens the source unless
        `source.open()` was called before."""
        self.source.open()
        trigger = self.config.trigger
        trigger.start(stop, self.counters)
        sender = threading.Thread(target=self._send_all, args=(stop,), name="stream-sender")
        done = threading.Event()
        stats = threading.Thread(target=self._log_counters, args=(done,), daemon=True,
                                 name="stream-stats")
        sender.start()
        stats.start()
        try:
            for frame in self.source.frames(stop):
                fire = trigger.check(frame)
                if fire is not None:
                    self._pick(frame, fire, stop)
        except ConnectError as exc:
            self.error = self.error or exc
            stop.set()
        except BaseException:
            stop.set()  # the sender must not go on retrying alone
            raise
        finally:
            self.queue.close()
            sender.join()
            for _ in self.queue.drain():
                self.counters.add("dropped")
            done.set()
            trigger.close()
            self.source.close()
            self.client.close()
        if self.error is None and isinstance(trigger, EventTrigger):
            self.error = trigger.error  # the line refused the trigger's setup
        if self.error is not None:
            raise self.error

    def _pick(self, frame: Frame, fire: Fire, stop: threading.Event) -> None:
        self.seq += 1
        self.counters.add("triggered")
        part = fire.part_id or self.part_ids.render(self.seq)
        pushed = self.queue.put(Capture(frame.image, part, f"frame {self.seq} (part {part})",
                                        f"stream-{self.run_id}-{self.seq}"), stop)
        if pushed is not None:
            self.counters.add("dropped")
            log.warning("%s dropped: %d frames already wait for the server", pushed.label,
                        self.config.queue_size)

    def _send_all(self, stop: threading.Event) -> None:
        while (item := self.queue.get(stop)) is not None:
            ok, jpeg = cv2.imencode(".jpg", item.image,
                                    [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
            if not ok:
                log.warning("%s: JPEG encoding failed; dropped", item.label)
                self.counters.add("dropped")
                continue
            try:
                answer = self.client.send(jpeg.tobytes(), "image/jpeg", item.part_id,
                                          item.label, stop, idempotency_key=item.key)
            except ConnectError as exc:
                self.error = exc
                self.counters.add("dropped")
                stop.set()
                return
            if answer is None:
                self.counters.add("dropped")  # stopped while the server was away
            elif answer.ok:
                self.counters.add("posted")
                log.info("%s: %s", item.label, answer.summary)
            else:
                self.counters.add("refused")
                log.warning("%s refused with %d: %s", item.label, answer.status,
                            answer.summary)

    def _log_counters(self, done: threading.Event) -> None:
        while not done.wait(self.config.stats_every_s):
            log.info("stream %s: %s", self.config.source, self.counters.line())
