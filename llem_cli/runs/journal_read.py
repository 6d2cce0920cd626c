"""Reading ``journal.jsonl``: the one reader, tolerant of the damage a crash can leave.

A last line that does not parse was being written when the writer died and is dropped; any other
unreadable line is reported once (as a :class:`Defect`) and skipped, never the whole run refused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llem_cli.runs.journal import JOURNAL_NAME

log = logging.getLogger(__name__)


@dataclass
class Defect:
    """A journal line that could not be read, for ``llem status`` to mention."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"{JOURNAL_NAME}:{self.line}: {self.reason}; line skipped"


def iter_events(path: Path | str, defects: list[Defect] | None = None) -> Iterator[dict[str, Any]]:
    """Yield the journal's events in order, tolerating damage from a crash.

    A last line that does not parse (torn by a power cut, or zero-filled by the
    filesystem) is dropped silently: it is the event that was being written
    and was never acted on. Any other unreadable line is logged, appended to
    ``defects`` when given, and skipped. A missing file yields nothing.
    """
    for _, event in _numbered_events(path, defects):
        assert isinstance(event, dict)
        yield event


_decode = json.JSONDecoder().decode
#: Events that change nothing in the run state. Lines the writer made for them
#: (compact JSON, type first) are recognised by prefix and not parsed: probes
#: are a third of a journal, and replay time is mostly JSON decoding. (So a
#: damaged probe line that still has the prefix and the closing brace goes
#: unreported; it carries no state.)
_INERT_PREFIXES = ('{"type":"probe",',)


def _numbered_events(
    path: Path | str, defects: list[Defect] | None, *, skip_inert: bool = False
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (line number, event); with ``skip_inert``, inert lines as their raw text."""
    try:
        # surrogateescape: a garbled byte fails the JSON parse of its line
        # (reported) instead of failing the whole read with UnicodeDecodeError.
        f = open(path, encoding="utf-8", errors="surrogateescape", newline="\n")  # noqa: SIM115
    except FileNotFoundError:
        return
    try:
        bad_line = 0  # the last unreadable line seen; reported once a line follows it
        for number, line, event in _decoded_lines(f, skip_inert):
            if bad_line:
                _report(defects, Defect(bad_line, "unreadable event"))
                bad_line = 0
            if event is _INERT:
                yield number, line
                continue
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                yield number, event
            elif line.strip("\x00 \t\r\n"):
                bad_line = number
        # A bad_line left here is the last line: torn, so ignored.
    finally:
        f.close()


_INERT = object()  # marks a line skipped unparsed (see _INERT_PREFIXES)
_FAILED = object()  # marks a line that is not JSON
_BATCHED = object()  # marks a line waiting for its batch to be decoded
#: Lines decoded together in one ``[line,line,...]`` document (see _decoded_lines).
_BATCH = 512


def _decoded_lines(lines: Iterator[str], skip_inert: bool) -> Iterator[tuple[int, str, Any]]:
    """Yield (line number, line, decoded value or _INERT or _FAILED), in order.

    Lines that look whole as the writer makes them (``{"type":"`` ... ``}``) are decoded
    ``_BATCH`` at a time as one JSON array: one decoder call instead of hundreds, and the
    decoder shares the key strings of the batch's objects (per-line decoding gives every
    record its own copies: a third of a replayed record's memory). A batch whose array does
    not parse, or parses into another number of values than it has lines, is decoded line by
    line instead, so a damaged line is found and reported exactly as before. (Damage from a
    crash -- a torn prefix, zero fill -- only ever leaves brackets open, so it cannot merge
    with whole neighbours into the same number of values.)
    """
    pending: list[tuple[int, str, Any]] = []  # in line order; _BATCHED: decode with the batch
    batched: list[str] = []

    def flush() -> Iterator[tuple[int, str, Any]]:
        try:
            values = _decode("[" + ",".join(batched) + "]")
        except ValueError:
            values = None
        if not isinstance(values, list) or len(values) != len(batched):
            values = [_decode_one(text) for text in batched]
        decoded = iter(values)
        for number, text, value in pending:
            yield number, text, next(decoded) if value is _BATCHED else value
        pending.clear()
        batched.clear()

    for number, line in enumerate(lines, 1):
        if skip_inert and line.startswith(_INERT_PREFIXES) and line.endswith("}\n"):
            pending.append((number, line, _INERT))
        elif line.startswith('{"type":"') and line.endswith("}\n"):
            pending.append((number, line, _BATCHED))
            batched.append(line)
            if len(batched) >= _BATCH:
                yield from flush()
        else:
            pending.append((number, line, _decode_one(line)))
    yield from flush()


def _decode_one(line: str) -> Any:
    try:
        return _decode(line)
    except ValueError:
        return _FAILED


def _report(defects: list[Defect] | None, defect: Defect) -> None:
    """Hand a defect to the caller that collects them (it says so once), else log it."""
    if defects is not None:
        defects.append(defect)
    else:
        log.warning("%s", defect)


def last_event_type(journal: Path, chunk: int = 8192) -> str | None:
    """Type of the journal's last readable event, read from its tail only."""
    try:
        with open(journal, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - chunk))
            tail = f.read()
    except FileNotFoundError:
        return None
    lines = tail.split(b"\n")
    if size > chunk:
        lines = lines[1:]  # the first piece may be the end of a longer line
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            return event["type"]
    return None


def first_event(journal: Path, limit: int = 1 << 20) -> dict[str, Any] | None:
    """The journal's first event, read from its first line only (None if unreadable)."""
    try:
        with open(journal, "rb") as f:
            line = f.readline(limit)
    except FileNotFoundError:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def first_event_type(journal: Path) -> str | None:
    """Type of the journal's first event."""
    event = first_event(journal)
    return event.get("type") if event else None
