"""The run's append-only journal (``journal.jsonl``): the one writer.

Everything a resume, ``llem status`` or ``llem results`` needs is in the journal:
one JSON event a line, written with one ``write`` on an ``O_APPEND`` descriptor
and ``fsync``ed before :meth:`Journal.append` returns, so an event the runner
acted on survives a power cut. A power cut can still tear the line being
written: reading ignores a torn last line, and reports (then skips) a damaged
line in the middle instead of refusing the whole run.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from llem_cli.atomic import fsync_dir
from llem_cli.runs.record import Record, finite_only
from llem_cli.timestamps import utc_now_iso

JOURNAL_NAME = "journal.jsonl"

#: Event types the runner writes. Those in RECORD_EVENTS carry a ``record``.
EVENT_TYPES = frozenset(
    {
        "run_started",
        "experiment_started",
        "experiment_finished",
        "restart",
        "probe",
        "pruned",
        "skipped",
        "run_finished",
        "run_aborted",
        "interrupted",
        "telemetry",
        "lanes",
        "pin_check",
        "lane_retired",
        "server_start",
        "server_ready",
        "gpu_settings_restored",
    }
)
RECORD_EVENTS = frozenset({"experiment_finished", "pruned", "skipped"})
_RESERVED = frozenset({"type", "ts", "pid"})


def make_event(kind: str, /, **fields: Any) -> dict[str, Any]:
    """The event :meth:`Journal.append` writes (``type``, ``ts``, ``pid``, then ``fields``).

    Apart from the writer so that ``--dry-run``'s unwritten journal builds the same events.
    """
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown journal event type {kind!r}")
    record = fields.get("record")
    if isinstance(record, Record):
        fields["record"] = record.to_json()
    if not _RESERVED.isdisjoint(fields):
        raise ValueError(f"event fields may not be named {sorted(_RESERVED)}")
    # "type" first: replay recognises some events by their line's prefix.
    return {"type": kind, "ts": utc_now_iso(), "pid": os.getpid(), **fields}


def _encode(event: dict[str, Any]) -> bytes:
    """One journal line. Non-finite floats (a ``result.json`` may hold NaN) become null."""
    try:
        text = json.dumps(event, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(finite_only(event), ensure_ascii=False, separators=(",", ":"))
    return text.encode() + b"\n"


class Journal:
    """Appends events to ``journal.jsonl``; each is on disk when :meth:`append` returns.

    Opening repairs a torn last line left by a crash by ending it with a
    newline first: appending to it would glue the next event onto the torn
    text and lose it too. The torn line then reads as a skipped middle line.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # lanes append from several threads: one event's write (and its truncation on a
        # failed write) must not interleave with another's
        self._lock = threading.Lock()
        created = not self.path.exists()
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        if created:
            fsync_dir(self.path.parent)
        else:
            self._end_torn_line()

    def _end_torn_line(self) -> None:
        assert self._fd is not None
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
        self._write(b"\n")

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("journal is closed")
        start = os.lseek(self._fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError:
            # a write that failed partway (disk full) must not leave a torn line that every
            # later reader reports: cut the file back to where this event began
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise

    def append(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Write one event (``type``: ``kind``, ``ts``, ``pid``, then ``fields``) durably.

        Returns the event as written, for the progress display and ``--json``.
        """
        event = make_event(kind, **fields)
        data = _encode(event)
        with self._lock:
            self._write(data)
        return event

    def close(self) -> None:
        """Close the descriptor; appending afterwards raises ValueError."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
