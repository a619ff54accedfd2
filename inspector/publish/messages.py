"""What is published, in one place: the destination names and the verdict message.

The outbox stores a message as it was built here, at commit time (topic + JSON payload), so a
resend after a crash or an upgrade sends the same bytes. The store does not import this
module: the inspection service hands `verdict_message` to `record_batch` as its builder.
"""

from __future__ import annotations

import json
from typing import Any

from inspector.settings import Settings
from inspector.store.inspections import NewInspection
from inspector.store.outbox import OutboxMessage

#: Destination name of the MQTT broker's outbox rows.
MQTT = "mqtt"


def webhook_destination(name: str) -> str:
    """Destination name of a webhook's outbox rows: `webhook:<name>`."""
    return f"webhook:{name}"


def destination_names(settings: Settings) -> list[str]:
    """Outbox destinations as configured: `mqtt` and `webhook:<name>` for each webhook."""
    out = [MQTT] if settings.mqtt_url else []
    return out + [webhook_destination(w.name) for w in settings.webhooks]


def verdict_topic(line: str, station: str) -> str:
    """MQTT topic `inspector/<line>/<station>/verdict` (both names are validated)."""
    return f"inspector/{line}/{station}/verdict"


def verdict_event(item: NewInspection) -> dict[str, Any]:
    """The published verdict: consumers de-duplicate on `id`."""
    return {
        "id": item.id,
        "created_at": item.created_at.isoformat(),
        "line": item.line,
        "station": item.station,
        "part_id": item.part_id,
        "verdict": item.verdict,
        "score": item.score,
        "threshold": item.threshold,
        "label": item.label,
        "model": {"name": item.model_name, "version": item.model_version},
        "image": item.image_key is not None,
    }


def verdict_message(item: NewInspection) -> OutboxMessage:
    """Topic and compact JSON payload of one verdict, as the outbox stores them."""
    return OutboxMessage(verdict_topic(item.line, item.station),
                         json.dumps(verdict_event(item), separators=(",", ":")))
