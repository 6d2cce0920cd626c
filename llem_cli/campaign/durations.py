"""Durations as campaign files write them: ``90``, ``90s``, ``5m``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import math
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
#: no wait, gap or timeout llem sleeps on is longer (about 31 years): beyond it, a typo
MAX_SECONDS = 1e9


def parse_duration(value: object) -> float:
    """Return seconds for a duration; raise ValueError with a fix-it message otherwise.

    A bare number is seconds. Units may be chained largest first (``1h30m``).
    Booleans are refused: YAML turns ``yes`` into True, which is never meant as 1 s. So are
    values past :data:`MAX_SECONDS` (an int too large for a float crashed validation).
    """
    return _within_range(_seconds(value))


def _within_range(seconds: float) -> float:
    if not seconds <= MAX_SECONDS:  # also NaN and infinity
        raise ValueError(f"a duration of at most {MAX_SECONDS:g} seconds is expected")
    return seconds


def _seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90, 90s, 5m or 1h30m, got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value) if value <= MAX_SECONDS else math.inf
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 90, 90s, 5m or 1h30m")
    text = value.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total, seen = 0, 0.0, []
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        unit = match.group(2)
        if unit in seen:
            break
        seen.append(unit)
        total += float(match.group(1)) * _UNIT_SECONDS[unit]
        pos = match.end()
    order = ["h", "m", "s", "ms"]
    if not text or pos != len(text) or seen != sorted(seen, key=order.index):
        raise ValueError(f"'{value}' is not a duration: use 90, 90s, 5m or 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly for people: ``1h30m``, ``5m``, ``2.5s``."""
    if seconds < 60:
        return f"{seconds:g}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"
