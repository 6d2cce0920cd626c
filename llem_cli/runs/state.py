"""Replaying a journal into the run's state, and the run's phase read from its tail."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern
from typing import TYPE_CHECKING, Any, Literal

from llem_cli.runs.journal import RECORD_EVENTS
from llem_cli.runs.journal_read import (
    Defect,
    _decode,
    _numbered_events,
    _report,
    first_event_type,
    last_event_type,
)
from llem_cli.runs.record import FINAL_STATUSES, Record

if TYPE_CHECKING:
    from llem_cli.runs.layout import RunDir


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


def run_phase(run: RunDir) -> Literal["finished", "unfinished", "not_started"]:
    """Whether the run finished, started and has not ``run_finished`` since, or never started.

    Aborted, interrupted and crashed runs are unfinished: ``--resume`` picks them up. A
    directory whose journal never got a ``run_started`` is not a run to resume: nothing in it
    was done, a new run is equivalent. Read from the journal's tail (and head), not replayed.
    """
    last = last_event_type(run.journal)
    if last == "run_finished":
        return "finished"  # the common case for old runs, without reading the whole journal
    if last is not None:
        # every session's events follow its run_started, so the journal's head settles
        # "started" without a replay of what may be 100k records (the resume replays once)
        return "unfinished" if first_event_type(run.journal) == "run_started" else "not_started"
    state = replay(run.journal)  # the tail is unreadable: let the whole journal decide
    if state.finished:
        return "finished"
    return "unfinished" if state.started else "not_started"


def is_unfinished(run: RunDir) -> bool:
    """Whether the run started and has not finished (see :func:`run_phase`)."""
    return run_phase(run) == "unfinished"
