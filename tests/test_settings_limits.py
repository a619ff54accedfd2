"""Settings refuse a memory budget that could never hold one legal frame."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inspector.core import images
from inspector.settings import Settings, load_settings

MIB = 2**20


def test_defaults_are_consistent() -> None:
    s = Settings()
    worst = images.worst_frame_bytes(s.max_pixels, s.max_side, s.max_body_bytes)
    assert worst <= s.max_inflight_bytes == 1024**3


def test_budget_below_the_largest_legal_frame_is_refused_with_what_to_change() -> None:
    worst = images.worst_frame_bytes(50_000_000, 16_384, 32 * MIB)
    with pytest.raises(ValidationError) as err:
        Settings(max_inflight_bytes=worst - 1)
    msg = str(err.value)
    assert "max_inflight_bytes" in msg and f"at least {worst}" in msg
    assert "lower max_pixels or max_body_bytes" in msg
    assert Settings(max_inflight_bytes=worst).max_inflight_bytes == worst  # exactly enough


def test_smaller_frames_allow_a_smaller_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_MAX_INFLIGHT_BYTES", str(64 * MIB))
    with pytest.raises(ValidationError, match="max_inflight_bytes"):
        load_settings()  # 64 MiB cannot hold a 50 Mpx frame
    monkeypatch.setenv("INSPECTOR_MAX_PIXELS", "1000000")
    monkeypatch.setenv("INSPECTOR_MAX_BODY_BYTES", str(8 * MIB))
    s = load_settings()
    assert s.max_inflight_bytes == 64 * MIB and s.max_pixels == 1_000_000
    # the body counts too: 60 MiB of body does not leave room for 1 Mpx of pixels
    monkeypatch.setenv("INSPECTOR_MAX_BODY_BYTES", str(60 * MIB))
    with pytest.raises(ValidationError, match="max_body_bytes=62914560"):
        load_settings()
