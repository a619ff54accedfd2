"""Build and run one outbox worker per configured destination."""

from __future__ import annotations

import logging
from collections.abc import Callable

from inspector.publish.delivery import Destination, OutboxWorker
from inspector.publish.mqtt import MqttDestination
from inspector.publish.webhook import WebhookDestination
from inspector.settings import Settings
from inspector.store.db import Database
from inspector.store.outbox import PendingEvent

log = logging.getLogger(__name__)


class Publishers:
    """The outbox workers of this node; `offer()` hands them the rows each commit wrote."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        on_backlog: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.workers: list[OutboxWorker] = []
        self.mqtt: MqttDestination | None = None
        node, backoff = settings.node_id, settings.publish_max_backoff_s
        if settings.mqtt_url:
            holder: list[OutboxWorker] = []
            self.mqtt = MqttDestination(
                settings.mqtt_url,
                client_id=f"inspector-{node}",
                on_reconnect=lambda: holder[0].retry_now() if holder else None,
            )
            holder.append(OutboxWorker(db, node, self.mqtt, max_backoff_s=backoff,
                                       on_backlog=on_backlog))
            self.workers.append(holder[0])
        for hook in settings.webhooks:
            dest: Destination = WebhookDestination(hook.name, hook.url,
                                                   hook.secret.get_secret_value())
            self.workers.append(OutboxWorker(db, node, dest, max_backoff_s=backoff,
                                             max_attempts=settings.webhook_max_attempts,
                                             on_backlog=on_backlog))

    def start(self) -> None:
        for w in self.workers:
            w.start()
            log.info("publishing verdicts to %s", w.destination.name)

    def offer(self, pending: dict[str, list[PendingEvent]]) -> None:
        """Rows just committed, by destination: each worker sends its own without a query."""
        for w in self.workers:
            events = pending.get(w.destination.name)
            if events:
                w.offer(events)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    @property
    def mqtt_connected(self) -> bool | None:
        """None when MQTT is not configured."""
        return None if self.mqtt is None else self.mqtt.connected
