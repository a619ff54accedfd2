"""MQTT delivery (paho-mqtt 2, QoS 1): a row counts as delivered only once its PUBACK arrives.

The client reconnects by itself; while it is disconnected nothing is sent and the outbox keeps
the verdicts. After a reconnect the worker is told to retry everything at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from inspector.core.broker import Broker
from inspector.publish.delivery import Outcome
from inspector.publish.messages import MQTT
from inspector.store.outbox import PendingEvent

log = logging.getLogger(__name__)


class MqttDestination:
    """Publishes outbox rows to their topic with QoS 1 and waits for the broker's PUBACKs."""

    name = MQTT

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        ack_timeout_s: float = 10.0,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        broker = Broker.parse(url)
        self.host, self.port = broker.host, broker.port
        self.ack_timeout_s = ack_timeout_s
        self._on_reconnect = on_reconnect
        self._connected = threading.Event()
        self._client = broker.client(client_id)
        self._client.max_inflight_messages_set(200)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; failures are retried by paho's loop."""
        self._client.connect_async(self.host, self.port, keepalive=20)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _handle_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("MQTT broker %s:%d refused the connection: %s", self.host, self.port, rc)
            return
        log.info("MQTT connected to %s:%d", self.host, self.port)
        self._connected.set()
        if self._on_reconnect:
            self._on_reconnect()

    def _handle_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any,
                           props: Any) -> None:
        if self._connected.is_set():
            level = logging.WARNING if getattr(rc, "is_failure", True) else logging.INFO
            log.log(level, "MQTT disconnected from %s:%d (%s); verdicts wait in the outbox",
                    self.host, self.port, rc)
        self._connected.clear()

    def deliver(self, events: list[PendingEvent]) -> list[Outcome]:
        """Publish all, then wait (up to the ack timeout) for each PUBACK."""
        if not self.connected:
            return [Outcome(e.id, False, "not connected to the MQTT broker") for e in events]
        sent: list[tuple[PendingEvent, mqtt.MQTTMessageInfo]] = []
        outcomes: list[Outcome] = []
        for e in events:
            info = self._client.publish(e.topic, e.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                reason = f"publish failed: {mqtt.error_string(info.rc)}"
                outcomes.append(Outcome(e.id, False, reason))
            else:
                sent.append((e, info))
        deadline = time.monotonic() + self.ack_timeout_s
        for e, info in sent:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    info.wait_for_publish(remaining)
                acked = info.is_published()
            except (RuntimeError, ValueError) as exc:
                outcomes.append(Outcome(e.id, False, str(exc)))
                continue
            error = None if acked else "no PUBACK from the broker in time"
            outcomes.append(Outcome(e.id, acked, error))
        return outcomes
