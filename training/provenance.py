"""Where a package came from: its name and version, the code revision, the split's files."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from inspector.core.card import NAME_PATTERN
from inspector.core.datasets import relative_name
from training.datasets import Sample, Splits


def package_name_version(out: Path) -> tuple[str, str]:
    """`models/<name>/<version>` -> (name, version), made safe for the card's name pattern."""
    clean = [
        re.sub(r"[^A-Za-z0-9_.-]", "-", part).lstrip("._-") or "model" for part in out.parts[-2:]
    ]
    name, version = ([*clean, "1"])[:2] if len(clean) == 1 else clean
    for value in (name, version):
        if not re.match(NAME_PATTERN, value):
            raise ValueError(f"{out}: cannot make a package name/version from {value!r}")
    return name, version


def code_revision() -> str | None:
    """The git commit this code was run from, when it runs from a checkout."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return rev.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_split(path: Path, splits: Splits) -> None:
    """Which files were trained on, calibrated on and held out for test, relative to the data
    folder: `inspector evaluate` / `calibrate` can use exactly the held-out files (for a
    classifier on the MVTec layout, half of test/<defect> was trained on)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def rel(samples: tuple[Sample, ...]) -> list[str]:
        return [relative_name(s.path, splits.root) for s in samples]

    doc: dict[str, Any] = {"root": str(splits.root.resolve()), "layout": splits.layout}
    doc.update({"train": rel(splits.train), "val": rel(splits.val), "test": rel(splits.test)})
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
