"""The model card: everything a server needs to preprocess a frame and decide, plus provenance.

`card.json` sits beside `model.onnx` in a model package. The threshold lives here, not in the
graph, so recalibrating never needs a re-export.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from inspector.core.errors import ModelPackageError

# NAME_PATTERN and utcnow stay importable from here: training and the cards use them.
from inspector.core.names import NAME_PATTERN as NAME_PATTERN
from inspector.core.names import ModelRef
from inspector.core.names import utcnow as utcnow

CARD_SCHEMA_VERSION = 1

ResizeMode = Literal["stretch", "letterbox", "center_crop"]
ColorMode = Literal["rgb", "gray"]
ModelKind = Literal["anomaly", "classifier", "hybrid"]
ThresholdMethod = Literal["target_frr", "best_f1", "target_escape", "manual", "default"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """How a frame becomes the graph's `image` input (uint8 RGB, NHWC)."""

    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)
    resize: ResizeMode = "stretch"
    #: "gray" converts frames to gray and repeats it on three channels before the graph.
    color: ColorMode = "rgb"
    #: Fill value for letterbox borders.
    pad_value: int = Field(default=0, ge=0, le=255)


class TilingSpec(_Strict):
    """Tiled inference for frames much larger than the model input (`core.tiles`).

    The frame is cut into overlapping tiles of `tile_width` x `tile_height` source pixels,
    each resized (stretched) to the model input: the scale the model was trained at
    (input width / tile width model pixels per source pixel) is kept whatever the frame's
    size, so a defect of a few hundred pixels in a 20 MP frame stays a few dozen pixels in
    the model input instead of vanishing in one whole-frame resize. Absent: the whole frame
    is resized to the input (every package made before tiling).
    """

    #: Tile size in source (full-resolution frame) pixels.
    tile_width: int = Field(gt=0, le=65_500)
    tile_height: int = Field(gt=0, le=65_500)
    #: Share of a tile that overlaps its neighbour, at least (tiles spread evenly).
    overlap: float = Field(default=0.25, ge=0.0, le=0.9)
    #: Median size of the training frames the tiles were cut from (for reference: a camera
    #: sending frames of another resolution sees the defects at another scale).
    frame_width: int | None = Field(default=None, gt=0)
    frame_height: int | None = Field(default=None, gt=0)


class ThresholdSpec(_Strict):
    """Decision threshold: verdict is fail when score >= value."""

    value: float
    method: ThresholdMethod = "default"
    #: The target the method aimed at (false-reject or escape rate), if any.
    target: float | None = None
    #: Which data it was chosen on, in words (folder, split, counts).
    data: str | None = None
    n_good: int | None = None
    n_defect: int | None = None
    #: Defect images per type behind `n_defect` (labelled defects of a hybrid model).
    n_defect_per_type: dict[str, int] | None = None
    #: The false-reject rate a target escape rate may cost at most; past it, the threshold is
    #: the one at this rate and the escape target is missed (said in `data`).
    max_frr: float | None = None
    #: The rates this threshold gave on the calibration scores: what to expect on the line.
    expected_false_reject_rate: float | None = None
    expected_escape_rate: float | None = None
    calibrated_at: datetime | None = None


class HeatmapSpec(_Strict):
    """Maps raw anomaly-map values onto the colour scale: vmin -> blue, vmax -> red; a frame
    whose map peaks above vmax is stretched so its peak is red (`core.heatmap.frame_scale`)."""

    vmin: float = 0.0
    vmax: float = 1.0
    #: Opacity of the colour overlay on the frame.
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("vmax")
    @classmethod
    def _vmax_above_vmin(cls, v: float, info: Any) -> float:
        vmin = info.data.get("vmin", 0.0)
        if v <= vmin:
            raise ValueError(f"vmax ({v}) must be greater than vmin ({vmin})")
        return v


class Provenance(_Strict):
    """Where a model came from: enough to reproduce it."""

    data: str | None = None
    backbone: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    code_revision: str | None = None
    created_at: datetime | None = None


class PrecisionParity(_Strict):
    """How an fp16 graph agreed with the fp32 graph it was converted from (ONNX Runtime CPU,
    same images): the largest differences, the tolerance they were held to, verdict flips."""

    n_images: int = Field(ge=1)
    max_abs_diff_score: float
    max_abs_diff_map: float
    #: Largest |score| and |map value| of the fp32 graph: the tolerance is relative to these.
    score_scale: float
    map_scale: float
    tolerance: float
    #: Images judged differently at the card's threshold (0 for a package that was written).
    verdict_flips: int = Field(ge=0)
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ExportInfo(_Strict):
    opset: int | None = None
    parity_max_abs_diff: float | None = None
    parity_images: int | None = None
    #: Floating-point precision inside the graph; its input stays uint8, outputs float32.
    precision: Literal["fp32", "fp16"] = "fp32"
    #: For an fp16 package: its parity against the fp32 graph it came from.
    fp16_parity: PrecisionParity | None = None


class ModelCard(_Strict):
    """Schema of `card.json` (schema_version 1)."""

    schema_version: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    kind: ModelKind = "anomaly"
    description: str = ""
    input: InputSpec
    #: Class names. For an anomaly model ["good", "defect"]; a classifier or a hybrid lists
    #: "good" first and then its defect types, in the order of the `probabilities` output.
    labels: list[str] = Field(default_factory=lambda: ["good", "defect"], min_length=2)
    threshold: ThresholdSpec
    heatmap: HeatmapSpec = Field(default_factory=HeatmapSpec)
    #: Tiled inference; None (and absent from card.json) = the whole frame is the input.
    tiling: TilingSpec | None = None
    metrics: dict[str, float | int | str | None] = Field(default_factory=dict)
    training: Provenance = Field(default_factory=Provenance)
    export: ExportInfo = Field(default_factory=ExportInfo)
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _tiling_fits(self) -> ModelCard:
        if self.tiling is not None:
            if self.kind != "anomaly":
                raise ValueError("tiling: only anomaly models are tiled (a classifier judges "
                                 "the whole frame)")
            if self.input.resize != "stretch":
                raise ValueError(f"tiling: tiles are stretched to the input; input.resize must "
                                 f"be stretch, not {self.input.resize}")
        return self

    @property
    def ref(self) -> str:
        """`name:version`, the way logs and responses name a model."""
        return str(ModelRef(self.name, self.version))


def read_card(path: Path) -> ModelCard:
    """Read and validate a card; every failure names the file and the field."""
    if not path.is_file():
        raise ModelPackageError(
            f"{path}: card.json is missing", hint="a model package needs model.onnx and card.json"
        )
    return parse_card(path, path.read_bytes())


def parse_card(path: Path, data: bytes) -> ModelCard:
    """Validate a card's bytes (read once by the caller); errors name `path`."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackageError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelPackageError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    version = raw.get("schema_version")
    if version != CARD_SCHEMA_VERSION:
        raise ModelPackageError(
            f"{path}: unsupported schema_version {version!r}",
            hint=f"this inspector reads schema_version {CARD_SCHEMA_VERSION}",
        )
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ModelPackageError(f"{path}: invalid card: {problems}") from exc


def write_card(card: ModelCard, path: Path) -> None:
    """Write a card atomically (write to a temporary file, then rename)."""
    tmp = path.with_suffix(".json.tmp")
    # An untiled card leaves `tiling` out, so it reads as before (also by older servers).
    exclude = {"tiling"} if card.tiling is None else None
    tmp.write_text(card.model_dump_json(indent=2, exclude=exclude) + "\n", encoding="utf-8")
    tmp.replace(path)
