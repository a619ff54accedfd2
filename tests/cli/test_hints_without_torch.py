"""Text with brackets is printed as given, never taken for rich markup: the hints without
torch name the extra in full (`.[train]`), and a key named `cam [line 3]` keeps its name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.harness import REPO, base_env, free_port

NO_TORCH = "import sys; sys.modules['torch'] = None; from inspector.cli import main; main()"


@pytest.mark.parametrize("command", ["demo", "train"])
def test_hint_names_the_train_extra(command: str, tmp_path: Path) -> None:
    args = (["demo", "--data-dir", str(tmp_path / "demo"), "--port", str(free_port())]
            if command == "demo" else ["train", "--data", str(tmp_path), "--out",
                                       str(tmp_path / "m" / "x" / "1")])
    r = subprocess.run([sys.executable, "-c", NO_TORCH, *args], env=base_env(tmp_path / "d"),
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2, r.stderr
    error = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and "pip install -e '.[train]'" in error[0], r.stderr


def test_key_names_with_brackets_are_printed_as_given(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", "from inspector.cli import main; main()", "keys",
                        "create", "--role", "camera", "--name", "cam [line 3]"],
                       env=base_env(tmp_path / "d"), capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "(cam [line 3])" in r.stderr
