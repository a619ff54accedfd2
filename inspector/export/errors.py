"""The export room's one error type."""

from __future__ import annotations

from inspector.core.errors import InspectorError


class ExportError(InspectorError):
    """A package could not be exported: the converter is missing, the output folder is taken,
    or the converted graph disagrees with the original."""
