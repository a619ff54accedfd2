"""A network camera stand-in: frames served over HTTP as MJPEG (multipart/x-mixed-replace),
the way many IP cameras do, by a tiny local server that tests stop and start again."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from tests.server.harness import free_port

Picture = Callable[[int], np.ndarray]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        n = 0
        while not self.server.closing.is_set():
            _, jpeg = cv2.imencode(".jpg", self.server.picture(n))
            data = jpeg.tobytes()
            try:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                 b"Content-Length: %d\r\n\r\n%s\r\n" % (len(data), data))
            except OSError:
                return  # the reader went away
            n += 1
            time.sleep(self.server.period)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read the adapter's log, not this one."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, picture: Picture, fps: float) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.picture = picture
        self.period = 1.0 / fps
        self.closing = threading.Event()


class MjpegCamera:
    """`url` serves `picture(n)` for the n-th frame of each connection, at `fps`."""

    def __init__(self, picture: Picture, fps: float = 20.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.picture = picture
        self.fps = fps
        self.server: _Server | None = None

    def start(self) -> MjpegCamera:
        self.server = _Server(self.port, self.picture, self.fps)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listener and every open stream: the reader sees the stream end."""
        if self.server is not None:
            self.server.closing.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> MjpegCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
