"""The model registry over HTTP: upload a package, promote or roll back a station, stop its
shadow, read its models and its shadow report. Changes are admin-only."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from inspector.core.names import MODEL_REF_PATTERN, NAME_PATTERN, ModelRef, as_utc
from inspector.lifecycle import uploads
from inspector.lifecycle.archive import Limits, pack, storage_error
from inspector.lifecycle.deployer import Deployer
from inspector.lifecycle.errors import (
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)
from inspector.lifecycle.schemas import ShadowReport, SignatureOut, StationOut, UploadOut
from inspector.lifecycle.shadow_report import build_report
from inspector.server.deps import AdminDep, ReaderDep, Services, ServicesDep
from inspector.server.errors import error_responses
from inspector.store import shadow as shadow_store

router = APIRouter(prefix="/v1", tags=["models"])

Station = Annotated[str, Path(pattern=NAME_PATTERN, description="Station name")]
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="Model name or version")]
_FLUSH = 4 << 20
_ARCHIVE = {"type": "string", "format": "binary"}
#: The upload is read from the raw request, so FastAPI cannot see it: describe it by hand.
_UPLOAD_BODY: dict[str, object] = {"requestBody": {
    "required": True,
    "description": "The package folder (card.json, model.onnx, ...) as a zip or tar archive: "
                   "the raw body, or one file field of a multipart form.",
    "content": {
        "application/gzip": {"schema": _ARCHIVE},
        "application/x-tar": {"schema": _ARCHIVE},
        "application/zip": {"schema": _ARCHIVE},
        "application/octet-stream": {"schema": _ARCHIVE},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["package"],
            "properties": {"package": _ARCHIVE}}},
    },
}}
_UPLOAD_HINT = ("send the archive as the raw body (Content-Type application/gzip, "
                "application/x-tar or application/zip) or as multipart/form-data with one file "
                "field named package")


def deployer_of(services: Services) -> Deployer:
    if services.deployer is None:
        raise ServiceUnavailableError("the model registry is not running on this server")
    return services.deployer


async def _save_body(request: Request, target: FsPath, limit: int) -> None:
    """Stream the request body (raw or the single file of a multipart form) to `target`."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    with target.open("wb") as fh:
        if ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=4)
            try:
                files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                if not files:
                    raise UnsupportedMediaTypeError("multipart body has no file part",
                                                    hint=_UPLOAD_HINT)
                await asyncio.to_thread(shutil.copyfileobj, files[0].file, fh, _FLUSH)
            finally:
                await form.close()
        elif ctype.startswith("application/") or not ctype:
            size, buf = 0, bytearray()
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"package upload is over {limit} bytes",
                                               hint="raise max_package_bytes in settings")
                buf += chunk
                if len(buf) >= _FLUSH:
                    await asyncio.to_thread(fh.write, bytes(buf))
                    buf.clear()
            await asyncio.to_thread(fh.write, bytes(buf))
        else:
            raise UnsupportedMediaTypeError(f"unsupported Content-Type {ctype!r} for a package",
                                            hint=_UPLOAD_HINT)


@router.post(
    "/models", response_model=UploadOut, status_code=201,
    summary="Upload a model package (zip or tar); validated before it is served",
    responses=error_responses({
        400: "Corrupt or unsafe archive",
        409: "That name:version exists already",
        413: "Archive over max_package_bytes",
        415: "Not a zip or tar archive",
        422: "Invalid package (card, checksum, I/O contract, test run), or refused for its "
             "signature (changed since signing; with require_signed: unsigned or untrusted)",
        503: "The registry or the database is unavailable (see Retry-After)"}),
    openapi_extra=_UPLOAD_BODY,
)
async def upload_model(request: Request, services: ServicesDep, _admin: AdminDep) -> UploadOut:
    """Unpack safely, validate (signature against trusted_keys and require_signed, card,
    checksum, I/O contract, a test frame through the pipeline), store under the models folder
    as `<name>/<version>/`, record and load it. It answers no station until deployed.

    Example: `tar czf pkg.tar.gz -C models/parts 2 && curl -X POST -H 'Authorization: Bearer
    ADMIN' -H 'Content-Type: application/gzip' --data-binary @pkg.tar.gz
    http://127.0.0.1:8000/v1/models`
    """
    deployer = deployer_of(services)
    s = services.settings
    try:
        work = await asyncio.to_thread(uploads.new_workdir, s.models_dir)
    except OSError as exc:
        raise storage_error(exc, s.models_dir) from exc
    try:
        archive = work / "upload.bin"
        await _save_body(request, archive, s.max_package_bytes)
        staged = await asyncio.to_thread(
            uploads.stage, archive, work, Limits(s.max_package_bytes),
            services.registry.runtime_options(), s.max_pixels, deployer.check_new,
            services.registry.trust)
        served = await deployer.install(staged)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    card = served.detector.card
    return UploadOut(
        name=card.name, version=card.version, kind=card.kind, input_width=card.input.width,
        input_height=card.input.height, threshold=card.threshold.value,
        onnx_sha256=card.onnx_sha256, path=str(served.detector.package.root),
        provider=served.detector.model.provider, unpacked_bytes=staged.unpacked_bytes,
        smoke_ms=round(staged.smoke_ms, 3), signature=SignatureOut.of(served.signature),
    )


def _packed(services: Services, name: str, version: str) -> FsPath:
    """The installed package `name:version` as a reproducible tar.gz in a temporary folder
    (the caller removes the folder); NotFoundError when it is not installed here."""
    ref = str(ModelRef(name, version))
    served = services.registry.models.get(ref)
    root = served.detector.package.root if served else services.settings.models_dir / name / version
    if not (root / "card.json").is_file():
        raise NotFoundError(f"model {ref} is not installed on this server",
                            hint="GET /v1/models lists the loaded models")
    work: FsPath | None = None
    try:
        work = uploads.new_workdir(services.settings.models_dir)
        pack(root, work / "package.tar.gz")
    except OSError as exc:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise storage_error(exc, root) from exc
    return work / "package.tar.gz"


@router.get("/models/{name}/{version}/package", response_class=FileResponse,
            summary="Download an installed model package (tar.gz)",
            responses=error_responses({404: "That name:version is not installed here"}))
async def download_model(services: ServicesDep, _admin: AdminDep, name: Name,
                         version: Name) -> FileResponse:
    """The package folder (card.json, model.onnx, report/, signature) as the same archive
    `POST /v1/models` takes, e.g. to evaluate the active model elsewhere (`inspector
    retrain`). Admin-only: a package is the plant's model.

    Example: `curl -H 'Authorization: Bearer ADMIN' -o pkg.tar.gz
    http://127.0.0.1:8000/v1/models/parts/2/package`
    """
    archive = await asyncio.to_thread(_packed, services, name, version)
    return FileResponse(archive, media_type="application/gzip",
                        filename=f"{name}-{version}.tar.gz",
                        background=BackgroundTask(shutil.rmtree, archive.parent, True))


@router.get("/stations/{station}/model", response_model=StationOut,
            summary="A station's active, shadow and rollback models")
async def station_models(services: ServicesDep, _p: ReaderDep, station: Station) -> StationOut:
    return StationOut.of(await deployer_of(services).state(station))


@router.post("/stations/{station}/promote", response_model=StationOut,
             summary="Make the station's shadow model its active one",
             responses=error_responses({404: "The shadow model is no longer installed",
                                        409: "The station has no shadow model to promote"}))
async def promote(services: ServicesDep, admin: AdminDep, station: Station) -> StationOut:
    """Frames already admitted finish on the old model; the next ones use the new one."""
    return StationOut.of(await deployer_of(services).promote(station, admin.name))


@router.post("/stations/{station}/rollback", response_model=StationOut,
             summary="Return the station to its previous active model",
             responses=error_responses({404: "The previous model is no longer installed",
                                        409: "The station has no previous model"}))
async def rollback(services: ServicesDep, admin: AdminDep, station: Station) -> StationOut:
    return StationOut.of(await deployer_of(services).rollback(station, admin.name))


@router.delete("/stations/{station}/shadow", response_model=StationOut,
               summary="Stop the station's shadow model (its results stay)",
               responses=error_responses({409: "The station has no shadow model"}))
async def stop_shadow(services: ServicesDep, admin: AdminDep, station: Station) -> StationOut:
    return StationOut.of(await deployer_of(services).stop_shadow(station, admin.name))


@router.get("/stations/{station}/shadow-report", response_model=ShadowReport,
            summary="The shadow model against the active one, and against reviews",
            responses=error_responses({404: "The station has no shadow results"}))
def shadow_report(
    services: ServicesDep,
    _p: ReaderDep,
    station: Station,
    model: Annotated[str | None, Query(
        pattern=MODEL_REF_PATTERN,
        description="Shadow model NAME:VERSION (default: the current or last shadow)")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 200_000,
) -> ShadowReport:
    """Agreement, verdict flips (both ways), Pearson and Spearman correlation of scores, and
    accuracy / false rejects / escapes of both models on the frames reviewers labelled."""
    ref = model or services.registry.shadows.get(station)
    if ref is None:
        last = shadow_store.latest_shadow_model(services.db, station)
        ref = str(last) if last else None
    if ref is None:
        raise NotFoundError(f"station {station} has no shadow results",
                            hint='deploy a shadow with PUT /v1/stations/{station}/model and '
                                 '{"model": "NAME:VERSION", "mode": "shadow"}')
    shadow = ModelRef.parse(ref)
    since, until = as_utc(since), as_utc(until)
    rows = shadow_store.shadow_rows(services.db, station, shadow.name, shadow.version, since,
                                    until, limit)
    runner = services.inspections.shadow
    return build_report(station, ref, rows, since=since, until=until,
                        truncated=len(rows) >= limit,
                        skipped=runner.skipped if runner is not None else 0)
