"""The README's OPC UA table documents every station variable the server creates."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("asyncua", reason="the namespace module needs the [opcua] extra")
from inspector.opcua.namespace import STATION_VARIABLES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_names_every_station_variable_with_its_type() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Connect the line: OPC UA", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `Stations/")]
    for var in STATION_VARIABLES:
        row = next((r for r in rows if var.name in r), None)
        assert row is not None, f"README's OPC UA table lacks {var.name}"
        assert f"| {var.type.name} |" in row, f"README gives {var.name} another type: {row}"
