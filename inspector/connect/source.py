"""Where a stream adapter's frames come from: a network stream, a video file or a camera device,
read with OpenCV (its FFmpeg backend for URLs and files, V4L2 for devices).

A live source (URL, device) that cannot be opened, stalls or ends is reopened with a doubling
delay up to a cap, forever: one warning when the outage starts, one line when it ends, and a
reconnect counted. A file is read once, as fast as the adapter takes its frames, on its own
timeline (frame number / its frame rate), so triggers see the times the camera saw.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2

from inspector.connect.client import ConnectError
from inspector.connect.triggers import Counters, Frame

log = logging.getLogger(__name__)

#: Frame rate assumed for a file that does not say its own.
DEFAULT_FPS = 25.0
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class SourceSpec:
    """Exactly one of: a stream URL, a video file, a capture device number."""

    url: str | None = None
    file: Path | None = None
    device: int | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.url, self.file, self.device) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one source: --url, --file or --device")
        if self.url is not None and not _SCHEME.match(self.url):
            raise ValueError(f"--url {self.url!r} is not a stream URL (rtsp://, http://, ...); "
                             "use --file for a video file")

    @property
    def live(self) -> bool:
        return self.file is None

    def __str__(self) -> str:
        """How logs name the source: a URL without its password."""
        if self.url is not None:
            return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", self.url)
        return str(self.file) if self.file is not None else f"camera device {self.device}"

    def open(self, timeout_ms: int) -> cv2.VideoCapture:
        """An OpenCV capture of the source; check `isOpened()`."""
        if self.url is not None:
            return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG,
                                    [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
        if self.device is not None:
            cap = cv2.VideoCapture(self.device)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued seconds ago
            return cap
        return cv2.VideoCapture(str(self.file))


@dataclass
class _Outage:
    """From a lost (or never opened) live source to its next frame."""

    began: float
    tries: int = 0
    delay: float = 0.5


class FrameSource:
    """Yields the frames of one source until stopped (or until a file ends)."""

    def __init__(self, spec: SourceSpec, counters: Counters, *, max_backoff_s: float = 30.0,
                 timeout_s: float = 5.0) -> None:
        self.spec = spec
        self.counters = counters
        self.max_backoff_s = max_backoff_s
        self.timeout_ms = int(timeout_s * 1000)
        self.cap: cv2.VideoCapture | None = None
        self.fps = DEFAULT_FPS
        self.index = 0
        self.outage: _Outage | None = None

    def open(self) -> None:
        """Open a file or device now: one that cannot be opened is a setup error. A URL that
        cannot be opened yet (the camera still booting) is retried by `frames`. Once only."""
        if self.cap is not None or self.outage is not None or self.index:
            return
        cap = self.spec.open(self.timeout_ms)
        if cap.isOpened():
            self._opened(cap)
            return
        cap.release()
        if self.spec.file is not None:
            raise ConnectError(f"cannot read the video file {self.spec}: OpenCV cannot "
                               "decode it")
        if self.spec.device is not None:
            raise ConnectError(f"cannot open {self.spec} (is it plugged in, and not in use? "
                               "`ls /dev/video*` lists the devices)")
        self._lost("cannot open it")

    def _opened(self, cap: cv2.VideoCapture) -> None:
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps <= 1000 else DEFAULT_FPS

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        while not stop.is_set():
            cap = self.cap or self._connect(stop)
            if cap is None:
                return
            started = time.monotonic()
            ok, image = cap.read()
            if not ok or image is None:
                if not self.spec.live:
                    return  # the end of the file
                self._lost("the stream ended or stalled")
                continue
            if self.outage is not None:
                self._recovered(self.outage)
            self.counters.add("read")
            ts = self.index / self.fps if not self.spec.live else time.monotonic()
            self.index += 1
            yield Frame(image, ts, started)

    def _lost(self, why: str) -> None:
        """Close the capture; the first failure of an outage is logged, the others are not."""
        self.close()
        if self.outage is None:
            self.outage = _Outage(time.monotonic())
            log.warning("%s: %s; reconnecting (waits double up to %.0f s)", self.spec, why,
                        self.max_backoff_s)

    def _connect(self, stop: threading.Event) -> cv2.VideoCapture | None:
        """Open the live source, waiting longer before each retry; None when stopped."""
        while not stop.is_set():
            if self.outage is None:
                self.outage = _Outage(time.monotonic())
            outage = self.outage
            if outage.tries:
                if stop.wait(outage.delay):
                    return None
                outage.delay = min(outage.delay * 2, self.max_backoff_s)
            outage.tries += 1
            cap = self.spec.open(self.timeout_ms)
            if cap.isOpened():
                self._opened(cap)
                return cap
            cap.release()
            self._lost("cannot open it")
        return None

    def _recovered(self, outage: _Outage) -> None:
        """Frames again: log the outage's end; a source that gave frames before reconnected."""
        log.info("%s: frames again after %.1f s (%d tries)", self.spec,
                 time.monotonic() - outage.began, outage.tries)
        if self.index:
            self.counters.add("reconnects")
        self.outage = None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
