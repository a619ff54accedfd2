"""Domain errors. Each carries a message that says what went wrong and what to do.

The HTTP layer maps these to status codes in one place; the CLI prints them as one line.
"""

from __future__ import annotations


class InspectorError(Exception):
    """Base class of every error the inspector raises on purpose."""

    #: HTTP status the API answers with when this error reaches it.
    status_code: int = 400

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ModelPackageError(InspectorError):
    """A model package is missing a file, has an invalid card, a bad checksum or wrong I/O."""

    status_code = 422


class ImageDecodeError(InspectorError):
    """Bytes that are not a decodable image (corrupt, truncated, empty, unknown format)."""

    status_code = 400


class ImageTooLargeError(ImageDecodeError):
    """An image whose header claims more pixels than allowed (decompression-bomb guard)."""

    status_code = 413


class DatasetError(InspectorError):
    """A data set folder that does not follow a supported layout."""

    status_code = 422


class InvalidTextError(InspectorError):
    """A text field (part id, note, defect type) holding control characters or too long."""

    status_code = 422
