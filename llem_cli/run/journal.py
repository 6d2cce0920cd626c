"""The run's append-only journal (``journal.jsonl``) and its replay into the run state.

Everything a resume, ``llem status`` or ``llem results`` needs is in the journal:
one JSON event a line, written with one ``write`` on an ``O_APPEND`` descriptor
and ``fsync``ed before :meth:`Journal.append` returns, so an event the runner
acted on survives a power cut. A power cut can still tear the line being
written: reading ignores a torn last line, and reports (then skips) a damaged
line in the middle instead of refusing the whole run.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from sys import intern
from typing import Any

log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.jsonl"

#: Every record status (DESIGN.md "Run directory").
STATUSES = frozenset(
    {
        "ok",
        "failed",
        "gpu_oom",
        "oom_killed",
        "timeout",
        "container_died",
        "not_runnable",
        "pruned",
        "skipped",
        "interrupted",
    }
)
#: Statuses that settle an experiment: a resume does not run it again.
FINAL_STATUSES = STATUSES - {"interrupted"}

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
    }
)
RECORD_EVENTS = frozenset({"experiment_finished", "pruned", "skipped"})
_RESERVED = frozenset({"type", "ts", "pid"})


def utc_now_iso() -> str:
    """Now in UTC as ISO 8601 with milliseconds and a ``Z``: sortable, unambiguous."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Record:
    """One experiment's result, field for field DESIGN.md's record.

    Quantities that were not measured stay None (``null`` in JSON), never 0:
    a zero energy would be a measurement, and averages over it would lie.
    """

    key: str
    config_id: str
    cycle: int
    backend: str
    service: str
    params: dict[str, Any]
    status: str
    attempts: int = 1
    exit_code: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    energy_j: float | None = None
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    net_energy_j: float | None = None
    max_temp_c: float | None = None
    restarts_before: int = 0
    metrics: dict[str, Any] | None = None
    error: str | None = None
    #: how the energy was measured (method, flags, warnings, reasons for nulls, thermal wait):
    #: llem's addition to DESIGN.md's fields, so a number always says where it came from
    measurement: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown record status {self.status!r}")

    @property
    def final(self) -> bool:
        """Whether this record settles the experiment (anything but ``interrupted``)."""
        return self.status in FINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in DESIGN.md's order.

        A deep copy, as ``dataclasses.asdict`` makes, at a fifth of its cost.
        """
        return {name: _copied(getattr(self, name)) for name in RECORD_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """Build from a journal dict; unknown keys (a newer llem) are ignored."""
        if tuple(data) == RECORD_FIELDS:  # as written by to_json: 4x faster, for replay
            return cls(*data.values())
        return cls(**{k: data[k] for k in RECORD_FIELDS if k in data})

    @classmethod
    def not_run(
        cls,
        *,
        key: str,
        config_id: str,
        cycle: int,
        backend: str,
        service: str,
        params: dict[str, Any],
        status: str,
        error: str,
        restarts_before: int = 0,
    ) -> Record:
        """A record for an experiment decided without running it (``pruned``, ``skipped``)."""
        return cls(
            key=key,
            config_id=config_id,
            cycle=cycle,
            backend=backend,
            service=service,
            params=params,
            status=status,
            attempts=0,
            restarts_before=restarts_before,
            error=error,
        )


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Record))
_ATOMS = (str, int, float, bool, type(None))


def _copied(value: Any) -> Any:
    """A deep copy of a record field (JSON types fast; anything else as ``asdict`` copies it)."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        return {k: _copied(v) for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    return asdict(_Box(value))["value"]


@dataclass(slots=True)
class _Box:
    """Lets an odd field value (a tuple, a dict subclass) be copied by ``asdict`` itself."""

    value: Any


def finite_only(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None: strict JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_only(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_only(v) for v in value]
    return value


def _encode(event: dict[str, Any]) -> bytes:
    """One journal line. Non-finite floats (a ``result.json`` may hold NaN) become null."""
    try:
        text = json.dumps(event, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(finite_only(event), ensure_ascii=False, separators=(",", ":"))
    return text.encode() + b"\n"


def fsync_dir(path: Path) -> None:
    """Make a directory entry (a new or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Appends events to ``journal.jsonl``; each is on disk when :meth:`append` returns.

    Opening repairs a torn last line left by a crash by ending it with a
    newline first: appending to it would glue the next event onto the torn
    text and lose it too. The torn line then reads as a skipped middle line.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
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
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown journal event type {kind!r}")
        record = fields.get("record")
        if isinstance(record, Record):
            fields["record"] = record.to_json()
        if not _RESERVED.isdisjoint(fields):
            raise ValueError(f"event fields may not be named {sorted(_RESERVED)}")
        # "type" first: replay recognises some events by their line's prefix.
        event = {"type": kind, "ts": utc_now_iso(), "pid": os.getpid(), **fields}
        self._write(_encode(event))
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
    log.warning("%s", defect)
    if defects is not None:
        defects.append(defect)


@dataclass
class RunState:
    """What the journal says about a run, as replayed by :func:`replay`.

    ``in_flight`` holds keys started and not finished since: the process died
    (or was stopped) while they ran, so a resume runs them again even if an
    earlier attempt left a final record. ``restarts`` counts every restart in
    the journal, ``restarts_this_session`` those since the last ``run_started``
    (a resumed run may grant a fresh ``max_restarts``: the runner chooses).
    """

    records: dict[str, Record | Settled] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    restarts: int = 0
    restarts_this_session: int = 0
    started: bool = False
    finished: bool = False
    aborted: bool = False
    interrupted: bool = False
    writer_pid: int | None = None
    sessions: int = 0
    events: int = 0
    last_event: dict[str, Any] | None = None
    defects: list[Defect] = field(default_factory=list)

    def needs_run(self, key: str) -> bool:
        """Whether a resume must run ``key``: no final record, or it was running at the end."""
        if key in self.in_flight:
            return True
        record = self.records.get(key)
        return record is None or not record.final

    def pending(self, keys: list[str]) -> list[str]:
        """The keys of ``keys`` (plan order) that a resume runs."""
        return [k for k in keys if self.needs_run(k)]

    def counts(self) -> dict[str, int]:
        """Records per status (latest record per key)."""
        out: dict[str, int] = {}
        for record in self.records.values():
            out[record.status] = out.get(record.status, 0) + 1
        return out


@dataclass(frozen=True, slots=True)
class Settled:
    """What a resume needs of a record it will not show: the key and its status.

    ``replay(slim=True)`` keeps these instead of full records (params, metrics and the
    measurement detail are ~2 KB per record, 200 MB at 100k) except for ``gpu_oom``
    records, which OOM pruning reads in full.
    """

    key: str
    status: str

    @property
    def final(self) -> bool:
        """Whether the record settles the experiment (anything but ``interrupted``)."""
        return self.status in FINAL_STATUSES


def replay(path: Path | str, *, slim: bool = False) -> RunState:
    """Fold the journal into a :class:`RunState` (latest record per key wins).

    A ``run_started`` after ``run_finished`` / ``run_aborted`` / ``interrupted``
    is a resume: the run counts as unfinished again until its next end event.
    ``slim`` keeps :class:`Settled` stand-ins instead of full records (see there).
    """
    # Replay allocates many long-lived containers and no cycles; the cyclic
    # GC's repeated scans of them cost about a tenth of the time at 100k records.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _replay(path, slim)
    finally:
        if gc_was_enabled:
            gc.enable()


def _replay(path: Path | str, slim: bool = False) -> RunState:
    state = RunState()
    records = state.records
    in_flight = state.in_flight
    event: dict[str, Any] | str | None = None
    for number, event in _numbered_events(path, state.defects, skip_inert=True):
        state.events += 1
        if isinstance(event, str):
            continue
        kind = event["type"]
        if kind in RECORD_EVENTS:
            data = event.get("record")
            if not isinstance(data, dict) or "key" not in data:
                _report(state.defects, Defect(number, f"{kind} event without a record"))
                continue
            try:
                record = Record.from_json(data)
            except (TypeError, ValueError) as e:
                _report(state.defects, Defect(number, f"bad record: {e}"))
                continue
            # a handful of values repeat in every record: one copy each, not one per record
            record.backend = intern(record.backend)
            record.service = intern(record.service)
            record.status = intern(record.status)
            if slim and record.status != "gpu_oom":
                records[record.key] = Settled(record.key, record.status)
            else:
                records[record.key] = record
            in_flight.discard(record.key)
        elif kind == "experiment_started":
            key = event.get("key")
            if isinstance(key, str):
                in_flight.add(key)
        elif kind == "restart":
            state.restarts += 1
            state.restarts_this_session += 1
        elif kind == "run_started":
            state.started = True
            state.sessions += 1
            state.restarts_this_session = 0
            state.finished = state.aborted = state.interrupted = False
        elif kind == "run_finished":
            state.finished = True
        elif kind == "run_aborted":
            state.aborted = True
        elif kind == "interrupted":
            state.interrupted = True
    if isinstance(event, str):  # an inert line skipped unparsed: parse it after all
        try:
            event = _decode(event)
        except ValueError:
            event = None
    if isinstance(event, dict):
        state.last_event = event
        pid = event.get("pid")
        state.writer_pid = pid if isinstance(pid, int) else None
    return state
