"""`mqtt:<topic>`: a message from the line (a PLC, a light barrier's gateway) takes a frame.

Each message on the topic (a subscription filter: `+` and `#` work) takes the next frame read
after it arrived. The payload may name the part: JSON `{"part_id": "A17"}` or the plain text
`A17`; an empty payload, other JSON, or an id the server would refuse (control characters,
over 128 characters) gets the adapter's own part id, with a warning for the latter. The
session is clean: a message sent while the adapter was disconnected is not replayed, since
its part has left the camera's view by then.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from inspector.connect.triggers import Counters, EventTrigger, line_part_id
from inspector.core.broker import Broker

log = logging.getLogger(__name__)


def check_topic_filter(topic: str) -> str:
    """`topic` when it is a valid MQTT subscription filter; ValueError saying why otherwise."""
    levels = topic.split("/")
    if not topic or "\x00" in topic or len(topic.encode()) > 65535:
        raise ValueError(f"MQTT topic {topic!r} is empty, too long or holds a NUL byte")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and
                                               (level != "#" or i != len(levels) - 1)):
            raise ValueError(f"MQTT topic {topic!r}: '+' must fill a whole level and '#' "
                             "must be the whole last level (e.g. line1/+/trigger)")
    return topic


def part_id_of(payload: bytes) -> str | None:
    """The part id a trigger message carries, or None (the adapter then makes one up)."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        log.warning("trigger message is not UTF-8 text; the part id is made up")
        return None
    part: Any = text
    if text.startswith("{"):
        try:
            part = json.loads(text).get("part_id")
        except (ValueError, AttributeError):
            part = None
        if isinstance(part, int | float) and not isinstance(part, bool):
            part = str(part)
    if not isinstance(part, str) or not part:
        return None
    return line_part_id(part, "trigger message")


class MqttTrigger(EventTrigger):
    """Subscribes to `topic` at QoS 1; every message requests one frame."""

    def __init__(self, url: str, topic: str) -> None:
        super().__init__()
        self.broker = Broker.parse(url)
        self.topic = check_topic_filter(topic)
        self.subscribed = threading.Event()
        self._down_logged = False
        self._client = self.broker.client("inspector-stream")
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self, stop: threading.Event, counters: Counters) -> None:
        """Connect in the background: paho reconnects by itself until `close`."""
        super().start(stop, counters)
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=20)
        self._client.loop_start()

    def close(self) -> None:
        self.subscribed.clear()  # a disconnect asked for is no outage
        self._client.disconnect()
        self._client.loop_stop()

    def _where(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    def _down(self, why: object) -> None:
        """Logs a broker outage once; the next subscription logs its end."""
        self.subscribed.clear()
        if not self._down_logged:
            self._down_logged = True
            log.warning("MQTT broker %s: %s; retrying (messages meanwhile are missed)",
                        self._where(), why)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            self._down(f"connection refused ({rc})")
            return
        client.subscribe(self.topic, qos=1)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._down("unreachable")

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, codes: Any,
                      props: Any) -> None:
        if any(getattr(c, "is_failure", False) for c in codes):
            self._down(f"subscription to {self.topic} refused")
            return
        self._down_logged = False
        self.subscribed.set()
        log.info("MQTT %s: waiting for triggers on %s", self._where(), self.topic)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any,
                       props: Any) -> None:
        if self.subscribed.is_set():
            self._down(f"disconnected ({rc})")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.request(time.monotonic(), part_id_of(message.payload))
