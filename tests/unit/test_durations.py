"""Durations as campaign files write them (docs/design.md §3.3: `90`, `90s`, `5m`, `1h30m`)."""

from __future__ import annotations

import pytest

from llem_cli.campaign.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (0, 0.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h", 3600.0),
        ("1h0m5s", 3605.0),
        ("2m30s", 150.0),
        ("250ms", 0.25),
        ("1s500ms", 1.5),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        ("  5m ", 300.0),
        ("1h 30m", 5400.0),
        ("5M", 300.0),
        ("0", 0.0),
    ],
)
def test_accepted(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5x", "'5x' is not a duration: use 90, 90s, 5m or 1h30m"),
        ("1m1h", "'1m1h' is not a duration"),  # units largest first
        ("1m1m", "'1m1m' is not a duration"),  # each unit once
        ("1m30", "'1m30' is not a duration"),  # trailing bare number
        ("m", "'m' is not a duration"),
        ("", "'' is not a duration"),
        ("-5s", "'-5s' is not a duration"),
        ("five minutes", "is not a duration"),
        ("1d", "'1d' is not a duration"),
        (True, "got a boolean"),
        (False, "got a boolean"),
        (-5, "a duration cannot be negative"),
        (-0.5, "a duration cannot be negative"),
        (None, "expected a duration such as 90, 90s, 5m or 1h30m"),
        ([5], "expected a duration"),
        ({"m": 5}, "expected a duration"),
    ],
)
def test_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (2.5, "2.5s"),
        (59, "59s"),
        (60, "1m"),
        (90, "1m30s"),
        (300, "5m"),
        (1860, "31m"),
        (3600, "1h"),
        (5400, "1h30m"),
        (3661, "1h1m1s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["1m30s", "5m", "1h30m", "1h1m1s", "45s", "2.5s"])
def test_format_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 61, 3599, 3600, 5400, 86399, 90061])
def test_parse_reads_what_format_writes(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("value", [10**400, "9" * 400, "1" + "0" * 320 + "h", 2e9, float("inf")])
def test_a_huge_duration_is_a_validation_error_not_a_crash(value: object) -> None:
    # found by make chaos (mutation fuzzing, seed 20261130): int too large to convert to float
    with pytest.raises(ValueError, match="at most"):
        parse_duration(value)
