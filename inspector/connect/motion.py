"""Part-present detection in a region of interest, by plain frame differencing.

The region is shrunk to at most 160 px wide, turned gray and blurred; a pixel "differs" when
its gray level is more than 25 away from the one it is compared with. The first frame is the
background, so start the adapter with the region empty. Then:

- empty: at most `threshold` of the region's pixels differ from the background. The
  background follows slow changes (daylight, lamps warming up) only in this state.
- arriving: more differ: a part came. It is taken once the region has been still (at most
  `threshold` of the pixels changed from the previous frame) for `settle_s` seconds: once
  per part, when it has stopped moving, not on every frame while it is there. A part that
  leaves before it settles is not taken.
- present: taken; nothing more until the region is back to its background.

Parts that never stop in the picture (a running belt) need `rate:` or a PLC signal (`mqtt:`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from inspector.connect.client import ConnectError
from inspector.connect.triggers import Counters, Fire, Frame

#: Gray levels a pixel must change by to count as different (well above sensor noise).
PIXEL_DELTA = 25
#: Width the region is shrunk to: enough for a part, cheap on every frame, less noise.
WORK_WIDTH = 160
#: How fast the background follows slow changes while the region is empty.
BACKGROUND_RATE = 0.05


@dataclass(frozen=True)
class Roi:
    """A region of interest in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str) -> Roi:
        """`"x,y,w,h"` -> Roi; ValueError saying the expected form otherwise."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise ValueError(f"--roi {text!r} is not x,y,w,h (four whole numbers of pixels, "
                             "e.g. 100,50,400,300)")
        x, y, w, h = (int(p) for p in parts)
        if w == 0 or h == 0:
            raise ValueError(f"--roi {text!r} has no area: width and height must be over 0")
        return cls(x, y, w, h)

    def crop(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if self.x + self.w > width or self.y + self.h > height:
            raise ConnectError(f"--roi {self.x},{self.y},{self.w},{self.h} does not fit in the "
                               f"stream's {width}x{height} frames")
        return image[self.y:self.y + self.h, self.x:self.x + self.w]


class _State(Enum):
    EMPTY = "empty"
    ARRIVING = "arriving"
    PRESENT = "present"


class MotionTrigger:
    """Takes one frame per part that arrives in the region and comes to rest."""

    def __init__(self, roi: Roi | None, *, threshold: float = 0.05, settle_s: float = 0.3) -> None:
        self.roi = roi
        self.threshold = threshold
        self.settle_s = settle_s
        self.state = _State.EMPTY
        self.background: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.still_since: float | None = None

    def start(self, stop: threading.Event, counters: Counters) -> None:
        """Nothing to start: the background is the first frame."""

    def close(self) -> None:
        """Nothing to release."""

    def _region(self, image: np.ndarray) -> np.ndarray:
        region = self.roi.crop(image) if self.roi else image
        if region.shape[1] > WORK_WIDTH:
            height = max(1, round(region.shape[0] * WORK_WIDTH / region.shape[1]))
            region = cv2.resize(region, (WORK_WIDTH, height), interpolation=cv2.INTER_AREA)
        if region.ndim == 3:
            region = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(region, (5, 5), 0).astype(np.float32)

    def _differs(self, a: np.ndarray, b: np.ndarray) -> bool:
        return float(np.count_nonzero(np.abs(a - b) > PIXEL_DELTA)) > self.threshold * a.size

    def check(self, frame: Frame) -> Fire | None:
        region = self._region(frame.image)
        previous, self.previous = self.previous, region
        if self.background is None or previous is None or previous.shape != region.shape:
            self.background = region.copy()  # the first frame, or the camera's size changed
            self.state, self.still_since = _State.EMPTY, None
            return None
        occupied = self._differs(region, self.background)
        if not occupied:
            cv2.accumulateWeighted(region, self.background, BACKGROUND_RATE)
            self.state, self.still_since = _State.EMPTY, None
            return None
        if self.state is _State.PRESENT:
            return None
        self.state = _State.ARRIVING
        if self._differs(region, previous):
            self.still_since = None
            return None
        if self.still_since is None:
            self.still_since = frame.ts  # the first frame unchanged from the one before
        if frame.ts - self.still_since < self.settle_s - 1e-6:
            return None
        self.state = _State.PRESENT
        return Fire()
