"""Delivery of recorded verdicts from the outbox: MQTT (QoS 1) and HMAC-signed webhooks."""
