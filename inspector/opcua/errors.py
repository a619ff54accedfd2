"""Why the OPC UA server could not run: each error says what to do."""

from __future__ import annotations

from inspector.core.errors import InspectorError


class OpcUaUnavailableError(InspectorError):
    """opcua_endpoint is set but asyncua (the `opcua` extra) is not installed."""


class OpcUaStartError(InspectorError):
    """The endpoint could not listen (port taken, bad certificate or key)."""
