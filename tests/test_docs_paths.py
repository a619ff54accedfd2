"""The READMEs and docs name files inside the repository only: no absolute paths to a
machine's folders (a reader of a clone cannot open /work/... or /home/...)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:work|home|root|Users|mnt)/[\w./-]+")


def test_docs_name_no_absolute_machine_paths() -> None:
    docs = [REPO / "README.md", *REPO.glob("*/README.md"), *REPO.glob("docs/*.md"),
            *REPO.glob("training/docs/*.md")]
    found = {str(d.relative_to(REPO)): ABSOLUTE.findall(d.read_text(encoding="utf-8"))
             for d in docs if d.is_file()}
    assert not {k: v for k, v in found.items() if v}
