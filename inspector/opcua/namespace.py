"""The OPC UA address space: `Objects/Node` and one `Objects/Stations/<station>` per station.

Every node has a string NodeId in the namespace `urn:inspector:<line>` that spells its path
(`ns=<i>;s=Stations/press-1/LastVerdict`), so a PLC program can address it without browsing.
The variables are read-only for clients (no write access level); only the server writes them.
`STATION_VARIABLES` is the table the README documents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from asyncua import Node, Server, ua

from inspector.opcua.feed import StationUpdate

log = logging.getLogger(__name__)

#: The value every DateTime starts at before a verdict: the OPC UA minimum (encoded as 0).
NEVER = datetime(1601, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Variable:
    """A station variable: browse name, type, value before the first verdict, and the
    Description a client sees when browsing."""

    name: str
    type: ua.VariantType
    initial: Any
    meaning: str


STATION_VARIABLES: tuple[Variable, ...] = (
    Variable("LastVerdict", ua.VariantType.String, "", '"pass" or "fail"; "" before the first'),
    Variable("LastScore", ua.VariantType.Double, float("nan"), "the last frame's score"),
    Variable("Threshold", ua.VariantType.Double, float("nan"),
             "the threshold the last verdict was judged by (score >= threshold fails)"),
    Variable("LastPartId", ua.VariantType.String, "", "part_id sent with the last frame"),
    Variable("LastInspectionId", ua.VariantType.String, "",
             "the last record's id (GET /v1/inspections/{id}); changes with every verdict"),
    Variable("Model", ua.VariantType.String, "", "model that judged it, name:version"),
    Variable("LastTime", ua.VariantType.DateTime, NEVER, "when the last frame was judged (UTC)"),
    Variable("PassCount", ua.VariantType.UInt64, 0, "passes since the server started"),
    Variable("FailCount", ua.VariantType.UInt64, 0, "fails since the server started"),
    Variable("FrameRequests", ua.VariantType.UInt64, 0,
             "times RequestFrame() was called since start (a camera adapter can watch it)"),
)


_TYPES = {v.name: v.type for v in STATION_VARIABLES}


def _values(u: StationUpdate) -> dict[str, Any]:
    """A verdict's variable values in write order: LastInspectionId last, so a client that
    reacts to its change reads the other variables of the same verdict."""
    return {"LastVerdict": u.verdict, "LastScore": u.score, "Threshold": u.threshold,
            "LastPartId": u.part_id, "Model": u.model, "LastTime": u.time,
            "PassCount": u.pass_count, "FailCount": u.fail_count,
            "LastInspectionId": u.inspection_id}


class AddressSpace:
    """Creates the nodes and writes verdicts into them (on the OPC UA server's loop)."""

    def __init__(self, server: Server, ns: int) -> None:
        self.server = server
        self.ns = ns
        self._stations: dict[str, dict[str, ua.NodeId]] = {}
        self._folder: Node | None = None
        self._models: ua.NodeId | None = None
        self._frame_requests: dict[str, int] = {}

    def _id(self, path: str) -> ua.NodeId:
        return ua.NodeId(ua.String(path), ua.Int16(self.ns))

    async def build(self, node_id: str, line: str, models: list[str]) -> None:
        """`Objects/Node` (this edge node) and the empty `Objects/Stations` folder."""
        objects = self.server.nodes.objects
        node = await objects.add_object(self._id("Node"), ua.QualifiedName("Node", self.ns))
        for name, value, vtype in (("NodeId", node_id, ua.VariantType.String),
                                   ("Line", line, ua.VariantType.String),
                                   ("ModelsLoaded", models, ua.VariantType.String)):
            await node.add_variable(self._id(f"Node/{name}"), ua.QualifiedName(name, self.ns),
                                    ua.Variant(value, vtype))
        self._models = self._id("Node/ModelsLoaded")
        self._folder = await objects.add_folder(self._id("Stations"),
                                                ua.QualifiedName("Stations", self.ns))

    async def add_station(self, station: str) -> None:
        """`Stations/<station>` with its variables and its RequestFrame() method."""
        if station in self._stations or self._folder is None:
            return
        base = f"Stations/{station}"
        obj = await self._folder.add_object(self._id(base), ua.QualifiedName(station, self.ns))
        ids: dict[str, ua.NodeId] = {}
        for var in STATION_VARIABLES:
            node = await obj.add_variable(self._id(f"{base}/{var.name}"),
                                          ua.QualifiedName(var.name, self.ns),
                                          ua.Variant(var.initial, var.type))
            await self.server.write_attribute_value(
                node.nodeid, ua.DataValue(ua.Variant(ua.LocalizedText(var.meaning))),
                ua.AttributeIds.Description)  # what a SCADA engineer sees when browsing
            ids[var.name] = node.nodeid

        async def call(parent: ua.NodeId) -> list[ua.Variant]:
            return [ua.Variant(await self._request_frame(station), ua.VariantType.UInt64)]

        await obj.add_method(self._id(f"{base}/RequestFrame"),
                             ua.QualifiedName("RequestFrame", self.ns), call, [],
                             [ua.VariantType.UInt64])
        self._stations[station] = ids

    def has(self, station: str) -> bool:
        return station in self._stations

    async def show(self, update: StationUpdate) -> None:
        """Write one committed verdict into its station's variables."""
        ids = self._stations[update.station]
        for name, value in _values(update).items():
            await self._write(ids[name], value, _TYPES[name], update.time)

    async def _request_frame(self, station: str) -> int:
        """RequestFrame(): count it in FrameRequests, which a camera adapter can watch."""
        count = self._frame_requests.get(station, 0) + 1
        self._frame_requests[station] = count
        await self._write(self._stations[station]["FrameRequests"], count,
                          ua.VariantType.UInt64, datetime.now(UTC))
        return count

    async def set_models(self, models: list[str]) -> None:
        if self._models is not None:
            await self._write(self._models, models, ua.VariantType.String, datetime.now(UTC))

    async def _write(self, node: ua.NodeId, value: Any, vtype: ua.VariantType,
                     at: datetime) -> None:
        await self.server.write_attribute_value(
            node, ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=cast(ua.DateTime, at)))
