"""Names and times shared by every room: the name and defect-type patterns, `ModelRef`
(`name:version`), and UTC helpers. One definition each; everything else imports these."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

#: Model, version, station, line and webhook names: they end up in MQTT topics, file paths
#: and log lines, so no '/', '+', '#', ':' or spaces.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)
#: A defect type (a review label's detail and a data set folder name): lower case.
DEFECT_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DEFECT_TYPE_RE = re.compile(DEFECT_TYPE_PATTERN)
#: `NAME:VERSION`, as a query parameter or request field.
MODEL_REF_PATTERN = NAME_PATTERN.removesuffix("$") + ":" + NAME_PATTERN.removeprefix("^")


@dataclass(frozen=True, order=True)
class ModelRef:
    """A model version, written `name:version` in settings, logs, URLs and JSON."""

    name: str
    version: str

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        """`"name:version"` -> ModelRef; ValueError saying the expected form otherwise."""
        name, sep, version = ref.partition(":")
        if not sep or not NAME_RE.match(name) or not NAME_RE.match(version):
            raise ValueError(f"model reference {ref!r} is not NAME:VERSION (names of letters, "
                             "digits, '_', '.', '-', starting with a letter or digit)")
        return cls(name, version)

    @staticmethod
    def name_of(ref: str) -> str:
        """The name part of `name:version` (or of a bare `name`)."""
        return ref.partition(":")[0]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


def utcnow() -> datetime:
    """Now, zone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(t: datetime | None) -> datetime | None:
    """A time from a query: one without a zone is taken as UTC; None stays None."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t
