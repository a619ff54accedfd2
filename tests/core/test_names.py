"""Shared names: ModelRef parsing and printing, the name and defect-type patterns, UTC helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from inspector.core.names import (
    DEFECT_TYPE_RE,
    MODEL_REF_PATTERN,
    NAME_RE,
    ModelRef,
    as_utc,
    utcnow,
)


def test_model_ref_round_trips_and_orders() -> None:
    ref = ModelRef.parse("mtd:12")
    assert (ref.name, ref.version) == ("mtd", "12")
    assert str(ref) == "mtd:12" and ModelRef.parse(str(ref)) == ref
    assert ModelRef("a", "2") < ModelRef("b", "1")
    assert ModelRef.name_of("mtd:12") == "mtd" and ModelRef.name_of("mtd") == "mtd"


@pytest.mark.parametrize("bad", ["mtd", "mtd:", ":1", "a:b:c", "m/x:1", "m:1 ", "m:+", "", " :1"])
def test_model_ref_refuses_what_is_not_name_colon_version(bad: str) -> None:
    with pytest.raises(ValueError, match="NAME:VERSION"):
        ModelRef.parse(bad)


def test_patterns_keep_names_safe_for_topics_and_paths() -> None:
    import re

    for ok in ("press-1", "line_2.a", "A", "x" * 64):
        assert NAME_RE.match(ok), ok
    for bad in ("", "-x", "a/b", "a+b", "a#", "a b", "a:b", "x" * 65, "é"):
        assert not NAME_RE.match(bad), bad
    assert DEFECT_TYPE_RE.match("crack") and not DEFECT_TYPE_RE.match("Crack")
    assert re.match(MODEL_REF_PATTERN, "mtd:1") and not re.match(MODEL_REF_PATTERN, "mtd")


def test_utc_helpers() -> None:
    now = utcnow()
    assert now.tzinfo is UTC and abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    naive = datetime(2026, 1, 1, 12, 0)
    assert as_utc(naive) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    plus2 = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(plus2) == plus2 and as_utc(None) is None
