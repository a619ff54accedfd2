"""This node's status on MQTT: `inspector/<site>/<line>/node/<id>/status`, retained JSON.

The client registers a last will (`{"state": "offline", ...}`, retained) when it connects,
so when the node dies without saying goodbye (killed, power cut, network gone) the broker
publishes it after the keep-alive runs out; a clean stop publishes the same itself. Statuses
are best effort (QoS 1, never queued in the outbox): only the latest one matters, and the
retained message always holds it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from inspector.core.broker import Broker
from inspector.core.names import utcnow

log = logging.getLogger(__name__)

def status_topic(site: str, line: str, node_id: str) -> str:
    return f"inspector/{site}/{line}/node/{node_id}/status"


def offline_payload(node_id: str, site: str, line: str) -> bytes:
    return json.dumps({"node": node_id, "site": site, "line": line,
                       "state": "offline"}).encode()


class NodeStatusPublisher:
    """A separate MQTT connection carrying the node's status and its last will."""

    def __init__(self, url: str, node_id: str, site: str, line: str,
                 keepalive_s: int = 15) -> None:
        """`keepalive_s`: the broker publishes the will after 1.5 times this much silence."""
        self.topic = status_topic(site, line, node_id)
        self.keepalive_s = keepalive_s
        self._offline = offline_payload(node_id, site, line)
        broker = Broker.parse(url)
        self.host, self.port = broker.host, broker.port
        self._client = broker.client(f"inspector-{node_id}-status")
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.will_set(self.topic, self._offline, qos=1, retain=True)

    def start(self) -> None:
        """Connect in the background (paho retries while the broker is away)."""
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self._client.loop_start()

    def publish(self, status: dict[str, Any]) -> None:
        """Publish the node's status (retained); dropped while disconnected."""
        payload = {**status, "state": "online", "at": utcnow().isoformat()}
        info = self._client.publish(self.topic, json.dumps(payload), qos=1, retain=True)
        if info.rc != 0:
            log.debug("node status not published (MQTT rc %s)", info.rc)

    def stop(self) -> None:
        """Say offline (a clean disconnect does not fire the will), then disconnect."""
        info = self._client.publish(self.topic, self._offline, qos=1, retain=True)
        try:
            info.wait_for_publish(2.0)
        except (RuntimeError, ValueError):
            log.debug("offline status not acknowledged before disconnect")
        self._client.disconnect()
        self._client.loop_stop()
