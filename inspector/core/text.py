"""Validation of free text that callers send (part ids, review notes, defect types).

Text is checked at the edge, before it reaches a record: PostgreSQL refuses NUL bytes in text
columns, and control characters in a part id end up in MQTT payloads, CSV exports and log
lines. Tabs and newlines are allowed only where a field is multi-line (`multiline=True`).
"""

from __future__ import annotations

import re

from inspector.core.errors import InvalidTextError

# C0 controls (NUL included), DEL, C1 controls, and the Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def check_text(value: str | None, field: str, *, max_length: int,
               multiline: bool = False) -> str | None:
    """`value` unchanged when it is clean; InvalidTextError saying what to fix otherwise."""
    if value is None:
        return None
    if len(value) > max_length:
        raise InvalidTextError(f"{field} is {len(value)} characters long, over the limit of "
                               f"{max_length}", hint=f"send a shorter {field}")
    pattern = _CONTROL_MULTILINE if multiline else _CONTROL
    bad = pattern.search(value)
    if bad is not None:
        raise InvalidTextError(
            f"{field} holds the control character U+{ord(bad.group()):04X} at position "
            f"{bad.start()}",
            hint=f"send {field} as printable text" + (
                "; tabs and line breaks are allowed" if multiline else ""),
        )
    return value
