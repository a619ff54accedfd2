"""Structured logs: one JSON object per line, extra fields kept."""

from __future__ import annotations

import json
import logging

from inspector.server.logs import JsonFormatter


def test_json_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("inspector.x", logging.INFO, __file__, 1, "judged %s", ("a",), None)
    record.station = "s1"
    out = json.loads(JsonFormatter().format(record))
    assert out["msg"] == "judged a" and out["level"] == "INFO" and out["station"] == "s1"
    assert out["ts"].endswith("+00:00")
