"""The published message and destination names, built in one place (inspector.publish)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.publish.messages import destination_names, verdict_message
from inspector.publish.mqtt import MqttDestination
from inspector.publish.webhook import WebhookDestination
from inspector.settings import load_settings
from inspector.store.db import Database
from inspector.store.inspections import record_batch
from tests.store.test_store import make_record


def test_verdict_message_topic_and_payload() -> None:
    item = make_record(station="press-1", verdict="fail", image_key="2024/01/01/x.jpg")
    msg = verdict_message(item)
    assert msg.topic == "inspector/l1/press-1/verdict"
    assert ": " not in msg.payload and ", " not in msg.payload  # compact JSON
    assert json.loads(msg.payload) == {
        "id": item.id, "created_at": item.created_at.isoformat(), "line": "l1",
        "station": "press-1", "part_id": "p", "verdict": "fail", "score": 0.1,
        "threshold": 0.5, "label": None, "model": {"name": "tiny", "version": "1"},
        "image": True,
    }


def test_destination_names_match_the_destinations(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, mqtt_url="mqtt://127.0.0.1:1",
                             webhooks=[{"name": "erp", "url": "http://127.0.0.1:9/",
                                        "secret": "s" * 16}])
    dest = WebhookDestination("erp", "http://127.0.0.1:9/", "s" * 16)
    assert destination_names(settings) == [MqttDestination.name, dest.name]
    assert destination_names(load_settings(data_dir=tmp_path)) == []


def test_outbox_rows_need_a_message_builder(db: Database) -> None:
    with pytest.raises(ValueError, match="message builder"):
        record_batch(db, [make_record()], ["mqtt"])
