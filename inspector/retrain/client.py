"""What `inspector retrain` asks of a running server, over its HTTP API and nothing else, so
it runs from any machine that reaches the server: the station's models, the active package,
the reviewed frames and their labels, then the upload and the shadow deploy.

Every call carries one admin key (downloading and uploading packages are admin-only). Each
failure becomes a RetrainError that says what to do: the server unreachable, the key refused
or without the admin role, a version that exists already.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from inspector.connect.client import answer_message
from inspector.core.errors import InspectorError
from inspector.lifecycle.archive import Limits, extract, pack
from inspector.lifecycle.uploads import find_package_root
from inspector.store.artifacts import MEDIA_TYPES

#: Largest package archive `download_package` unpacks.
MAX_PACKAGE_BYTES = 2 << 30
_KEY_HINT = "pass an admin key with --key or INSPECTOR_ADMIN_KEY (make one with " \
            "`inspector keys create --role admin` on the server)"
_EXTENSIONS = {media: ext for ext, media in MEDIA_TYPES.items()}


class RetrainError(InspectorError):
    """Retraining cannot go on; `exit_code` is what the command exits with."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ReviewedFrame:
    """A reviewed inspection with a stored frame: its current label."""

    inspection_id: str
    #: "good" or "defect".
    label: str
    defect_type: str | None
    inspected_at: datetime


class ServerClient:
    """The server at `url`, called with an admin `key`."""

    def __init__(self, url: str, key: str, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s,
                                 headers={"Authorization": f"Bearer {key}"})

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,),
              **kwargs: Any) -> httpx.Response:
        """One request; RetrainError for a transport failure or an answer not in `ok`."""
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if r.status_code not in ok:
            raise _refusal(r, method, path)
        return r

    def _unreachable(self, exc: Exception) -> RetrainError:
        return RetrainError(f"cannot reach the server at {self.url}: {exc}",
                            hint="check --url and that `inspector serve` runs there")

    def station_models(self, station: str) -> dict[str, Any]:
        """GET /v1/stations/{station}/model: active, shadow, previous."""
        body: dict[str, Any] = self._call("GET", f"/v1/stations/{station}/model").json()
        return body

    def loaded_versions(self, name: str) -> list[str]:
        """Versions of model `name` the server has loaded (GET /v1/models)."""
        models = self._call("GET", "/v1/models").json().get("models", [])
        return [str(m["version"]) for m in models if m.get("name") == name]

    def download_package(self, name: str, version: str, dest: Path) -> Path:
        """Fetch and safely unpack package name:version into the new folder `dest`; returns
        the package folder inside it."""
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "package.tar.gz"
            with archive.open("wb") as fh:
                for chunk in self._stream(f"/v1/models/{name}/{version}/package"):
                    fh.write(chunk)
            extract(archive, dest, Limits(MAX_PACKAGE_BYTES))
        return find_package_root(dest)

    def _stream(self, path: str) -> Iterator[bytes]:
        try:
            with self.http.stream("GET", path) as r:
                if r.status_code != 200:
                    r.read()
                    raise _refusal(r, "GET", path)
                yield from r.iter_bytes()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def reviewed_frames(self, station: str, since: datetime) -> tuple[list[ReviewedFrame], int]:
        """Inspections at `station` from `since` on with a current review, and how many of
        them have no stored frame (those cannot be trained on)."""
        labels = {r["inspection_id"]: r for r in self._pages(
            "/v1/reviews", {"station": station, "since": since.isoformat(), "limit": 1000})}
        frames, missing = [], 0
        for row in self._pages("/v1/inspections", {"station": station, "review": "reviewed",
                                                   "since": since.isoformat(), "limit": 500}):
            review = labels.get(row["id"])
            if review is None:
                continue  # reviewed after the reviews page was read
            if not row["links"].get("image"):
                missing += 1
                continue
            frames.append(ReviewedFrame(row["id"], review["label"], review.get("defect_type"),
                                        datetime.fromisoformat(row["created_at"])))
        return sorted(frames, key=lambda f: f.inspection_id), missing

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a paged list (newest first), following `next_cursor`."""
        query = dict(params)
        while True:
            page = self._call("GET", path, params=query).json()
            yield from page["items"]
            if page.get("next_cursor") is None:
                return
            query["before"] = page["next_cursor"]

    def frame(self, inspection_id: str) -> tuple[bytes, str] | None:
        """The stored frame and its file extension; None when the server no longer has it."""
        r = self._call("GET", f"/v1/inspections/{inspection_id}/image", ok=(200, 404))
        if r.status_code == 404:
            return None
        media = r.headers.get("content-type", "").split(";", 1)[0].strip()
        return r.content, _EXTENSIONS.get(media, "img")

    def upload_package(self, package: Path) -> dict[str, Any]:
        """POST /v1/models with the package folder as a tar.gz."""
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "package.tar.gz"
            pack(package, archive)
            r = self._call("POST", "/v1/models", ok=(201, 409), content=archive.read_bytes(),
                           headers={"Content-Type": "application/gzip"})
        if r.status_code == 409:
            raise RetrainError(f"the server refused the upload: {answer_message(r)}",
                               hint="pass another --version")
        body: dict[str, Any] = r.json()
        return body

    def deploy_shadow(self, station: str, ref: str) -> None:
        """PUT /v1/stations/{station}/model with mode shadow."""
        self._call("PUT", f"/v1/stations/{station}/model",
                   json={"model": ref, "mode": "shadow"})


def _refusal(r: httpx.Response, method: str, path: str) -> RetrainError:
    """The error for an answer retrain cannot use; a refused key or role is exit code 2."""
    message = answer_message(r)
    if r.status_code == 401:
        return RetrainError(f"the server refused the key: {message}", hint=_KEY_HINT,
                            exit_code=2)
    if r.status_code == 403:
        return RetrainError(f"the key is not an admin key: {message}", hint=_KEY_HINT,
                            exit_code=2)
    return RetrainError(f"{method} {path} answered {r.status_code}: {message}")
