"""UTC timestamps as llem writes them: ISO 8601, milliseconds, a ``Z``; sortable, unambiguous."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """``moment`` (aware) as UTC ISO 8601 with milliseconds and a ``Z``."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utc_now_iso() -> str:
    """Now as :func:`iso` writes it (journal events, lock files)."""
    return iso(utc_now())
