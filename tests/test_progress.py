"""Progress when output is not a terminal: plain lines (phase, step/total, elapsed, ETA), a
tenth of the way (once a step has run a few seconds) or 30 s apart, never silent on a long step,
quiet on a short one; rich bars only on a terminal."""

from __future__ import annotations

import io

import pytest

from inspector import progress
from inspector.progress import PlainBar, task, track


def test_plain_lines_every_tenth_with_step_elapsed_and_eta() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = PlainBar("extracting patch features", 100, out, clock=lambda: now[0])
    for _ in range(100):
        now[0] += 0.5  # a 50 s step
        bar.advance(1)
    bar.finish()
    lines = out.getvalue().splitlines()
    # Quiet for the first QUIET_S seconds (10 steps), then a line per tenth.
    assert len(lines) == 10, lines
    assert lines[0].startswith("extracting patch features: 10/100 (10%), 0:00:05 elapsed, ETA")
    assert lines[-1] == "extracting patch features: 100/100 (100%), 0:00:50 elapsed"


def test_short_step_prints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSPECTOR_PROGRESS", raising=False)
    out = io.StringIO()
    assert list(track(list(range(100)), "checking colour", stream=out)) == list(range(100))
    assert out.getvalue() == ""


def test_plain_line_every_30_s_on_a_slow_step() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = PlainBar("coreset selection", 1000, out, clock=lambda: now[0])
    for _ in range(3):
        now[0] += 31.0
        bar.advance(1)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert [ln.split(", ETA")[0] for ln in lines] == [
        "coreset selection: 1/1000 (0%), 0:00:31 elapsed",
        "coreset selection: 2/1000 (0%), 0:01:02 elapsed",
        "coreset selection: 3/1000 (0%), 0:01:33 elapsed",
    ]
    assert lines[0].endswith("ETA 8:36:09")
    assert len(lines) == 3  # finish adds nothing: the last line is current


def test_terminal_gets_rich_and_progress_0_silences(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    with task("epoch 1/3", 4, stream=tty) as bar:
        bar.advance(4)
    assert "epoch 1/3" in tty.getvalue() and "4/4" in tty.getvalue()

    monkeypatch.setenv("INSPECTOR_PROGRESS", "0")
    out = io.StringIO()
    with task("epoch 1/3", 4, stream=out) as bar:
        bar.advance(4)
    assert out.getvalue() == "" and not progress.enabled()
