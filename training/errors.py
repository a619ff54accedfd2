"""Training's errors: `InspectorError`s, so `inspector train` prints them as one line."""

from __future__ import annotations

from inspector.core.errors import InspectorError


class TrainingError(InspectorError):
    """A training request that cannot be carried out (bad option, missing weights, ...)."""

    status_code = 422
