"""Request and response schemas of the registry API: uploads, station changes, shadow reports."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from inspector.core.signing import Verification
from inspector.lifecycle.deployer import StationState


class SignatureOut(BaseModel):
    """Who signed a package (README "Signed model packages"); null where it is unsigned."""

    key_id: str
    signer: str
    signed_at: datetime
    #: Whether key_id is in this server's trusted_keys (false only while require_signed is off).
    trusted: bool

    @classmethod
    def of(cls, v: Verification | None) -> SignatureOut | None:
        if v is None or v.key_id is None or v.signer is None or v.signed_at is None:
            return None
        return cls(key_id=v.key_id, signer=v.signer, signed_at=v.signed_at, trusted=v.trusted)


class UploadOut(BaseModel):
    """A package that passed validation and is now served (deploy it to use it)."""

    name: str
    version: str
    kind: str
    input_width: int
    input_height: int
    threshold: float
    onnx_sha256: str
    path: str
    provider: str
    unpacked_bytes: int
    #: One synthetic frame through resize, inference, verdict and heatmap.
    smoke_ms: float
    signature: SignatureOut | None


class StationOut(BaseModel):
    """A station's models: the one that answers, the one in shadow, the rollback target."""

    station: str
    active: str | None
    shadow: str | None
    previous: str | None

    @classmethod
    def of(cls, s: StationState) -> StationOut:
        return cls(station=s.station, active=s.active, shadow=s.shadow, previous=s.previous)


class ModelStats(BaseModel):
    """One model's verdicts on the compared frames."""

    fail_rate: float | None
    mean_score: float | None


class ReviewedStats(BaseModel):
    """One model against the reviewers' labels."""

    accuracy: float | None
    #: Reviewed good, judged fail.
    false_rejects: int
    false_reject_rate: float | None
    #: Reviewed defect, judged pass.
    escapes: int
    escape_rate: float | None


class TypeEscapes(BaseModel):
    """Reviewed defects of one type that each model passed."""

    n: int
    active_escapes: int
    active_escape_rate: float | None
    shadow_escapes: int
    shadow_escape_rate: float | None


class ReviewedComparison(BaseModel):
    """Both models against the reviewers' labels; every rate rests on `n` frames."""

    n: int
    n_defect: int
    n_good: int
    active: ReviewedStats
    shadow: ReviewedStats
    #: Per reviewed defect type ("unspecified" when the reviewer named none).
    by_type: dict[str, TypeEscapes] = {}
    #: What the rates rest on, in words (how many frames, and how they were chosen).
    basis: str = ""


class Flips(BaseModel):
    """Frames where the shadow would have answered differently."""

    #: Active said pass, shadow says fail.
    pass_to_fail: int
    #: Active said fail, shadow says pass.
    fail_to_pass: int


class Correlation(BaseModel):
    pearson: float | None
    spearman: float | None


class ShadowReport(BaseModel):
    """The shadow model against the active one on the same frames."""

    station: str
    shadow_model: str
    #: Active models seen on these frames (more than one when the active was swapped).
    active_models: list[str]
    since: datetime | None
    until: datetime | None
    n: int
    agreement: float | None
    flips: Flips
    score_correlation: Correlation
    active: ModelStats
    shadow: ModelStats
    reviewed: ReviewedComparison
    #: True when only the newest `limit` frames were compared.
    truncated: bool
    #: Frames this server skipped for the shadow (bounded shadow work under load) since start.
    skipped_since_start: int
