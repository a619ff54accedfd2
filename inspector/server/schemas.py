"""Request and response schemas of the HTTP API (separate from the storage models)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator

from inspector.core.errors import InvalidTextError
from inspector.core.names import DEFECT_TYPE_PATTERN, NAME_PATTERN
from inspector.core.text import check_text
from inspector.lifecycle.schemas import SignatureOut
from inspector.store.models import Inspection, Review

if TYPE_CHECKING:
    from inspector.server.service import InspectionResult

#: Defect type names become folder names in dataset exports: keep them plain.
NOTE_MAX_CHARS = 2000


def clean_text(value: str | None, field: str, *, max_length: int,
               multiline: bool = False) -> str | None:
    """`check_text` for a pydantic validator: its message (and hint) as a ValueError, so
    the answer is the usual 422 naming the field."""
    try:
        return check_text(value, field, max_length=max_length, multiline=multiline)
    except InvalidTextError as exc:
        raise ValueError(str(exc)) from None


class ModelRef(BaseModel):
    name: str
    version: str


class Timings(BaseModel):
    """Milliseconds per stage; `total_ms` runs from the full body being read to the commit."""

    decode_ms: float
    queue_ms: float
    inference_ms: float
    record_ms: float
    total_ms: float
    batch_size: int


class Links(BaseModel):
    self: str
    image: str | None
    heatmap: str | None


class InspectResponse(BaseModel):
    id: str
    created_at: datetime
    station: str
    part_id: str | None
    verdict: Literal["pass", "fail"]
    score: float
    threshold: float
    label: str | None
    model: ModelRef
    timings: Timings
    links: Links
    #: `data:image/jpeg;base64,...` overlay when asked for with `heatmap=inline`.
    heatmap_inline: str | None = None
    #: True when this is the recorded answer of an earlier request with the same
    #: Idempotency-Key (the frame was not judged or recorded again).
    replayed: bool = False


class InspectionOut(BaseModel):
    id: str
    created_at: datetime
    #: The edge node that judged the frame (INSPECTOR_NODE_ID): in a fleet, where its
    #: sampled-pass evidence lives.
    node: str
    line: str
    station: str
    part_id: str | None
    verdict: Literal["pass", "fail"]
    score: float
    threshold: float
    label: str | None
    model: ModelRef
    frame_width: int
    frame_height: int
    review_state: Literal["unreviewed", "defect", "good"]
    timings_ms: dict[str, float]
    links: Links

    @classmethod
    def of(cls, row: Inspection) -> InspectionOut:
        return cls(
            id=row.id, created_at=row.created_at, node=row.node, line=row.line,
            station=row.station,
            part_id=row.part_id, verdict=row.verdict, score=row.score,  # type: ignore[arg-type]
            threshold=row.threshold, label=row.label,
            model=ModelRef(name=row.model_name, version=row.model_version),
            frame_width=row.frame_width, frame_height=row.frame_height,
            review_state=row.review_state,  # type: ignore[arg-type]
            timings_ms={"queue": row.queue_ms, "decode": row.decode_ms,
                        "inference": row.inference_ms, "total": row.total_ms},
            links=links_for(row.id, row.image_key is not None, row.heatmap_key is not None),
        )


def inspect_response(result: InspectionResult) -> InspectResponse:
    """The camera's answer for a judged, recorded frame."""
    return InspectResponse(
        id=result.id, created_at=result.created_at, station=result.station,
        part_id=result.part_id, verdict=result.verdict, score=result.score,
        threshold=result.threshold, label=result.label,
        model=ModelRef(name=result.model_name, version=result.model_version),
        timings=Timings(decode_ms=round(result.decode_ms, 3),
                        queue_ms=round(result.queue_ms, 3),
                        inference_ms=round(result.inference_ms, 3),
                        record_ms=round(result.record_ms, 3),
                        total_ms=round(result.total_ms, 3), batch_size=result.batch_size),
        links=links_for(result.id, result.image_stored, result.heatmap_stored),
        heatmap_inline=result.heatmap_inline, replayed=result.replayed,
    )


def links_for(inspection_id: str, image: bool, heatmap: bool) -> Links:
    base = f"/v1/inspections/{inspection_id}"
    return Links(self=base, image=f"{base}/image" if image else None,
                 heatmap=f"{base}/heatmap" if heatmap else None)


class InspectionPage(BaseModel):
    items: list[InspectionOut]
    #: Pass as `before` to get the next (older) page; null on the last page.
    next_cursor: str | None


class ReviewIn(BaseModel):
    label: Literal["defect", "good"]
    defect_type: str | None = Field(default=None, pattern=DEFECT_TYPE_PATTERN)
    #: Free text; tabs and line breaks are fine, other control characters (NUL) are refused.
    note: str | None = Field(default=None, max_length=NOTE_MAX_CHARS)

    @field_validator("defect_type")
    @classmethod
    def _plain_defect_type(cls, v: str | None) -> str | None:
        return clean_text(v, "defect_type", max_length=64)

    @field_validator("note")
    @classmethod
    def _printable_note(cls, v: str | None) -> str | None:
        return clean_text(v, "note", max_length=NOTE_MAX_CHARS, multiline=True)


class ReviewOut(BaseModel):
    id: int
    inspection_id: str
    label: str
    defect_type: str | None
    note: str | None
    reviewer: str
    created_at: datetime

    @classmethod
    def of(cls, r: Review) -> ReviewOut:
        return cls(id=r.id, inspection_id=r.inspection_id, label=r.label,
                   defect_type=r.defect_type, note=r.note, reviewer=r.reviewer,
                   created_at=r.created_at)


class ModelOut(BaseModel):
    name: str
    version: str
    kind: str
    input_width: int
    input_height: int
    threshold: float
    provider: str
    #: Why that provider serves it ("cpu: no CUDA device found").
    provider_reason: str
    #: Precision inside the graph (fp32, or fp16 for `inspector export fp16` packages).
    precision: str
    stations: list[str]
    #: Who signed the package (checked at load); null for an unsigned package.
    signature: SignatureOut | None


class ModelsOut(BaseModel):
    models: list[ModelOut]
    #: Packages refused at startup: folder -> reason.
    refused: dict[str, str]
    stations: dict[str, str]


class DeployIn(BaseModel):
    #: `name:version` (or `name` when only one version is loaded).
    model: str = Field(min_length=1, max_length=130)
    #: active answers the station; shadow judges the same frames on the side and only records.
    mode: Literal["active", "shadow"] = "active"

    @field_validator("model")
    @classmethod
    def _printable_model(cls, v: str) -> str:
        return clean_text(v, "model", max_length=130) or v


class DeployOut(BaseModel):
    station: str = Field(pattern=NAME_PATTERN)
    model: str
    mode: str
