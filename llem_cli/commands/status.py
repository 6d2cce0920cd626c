"""``llem status``: progress of a running, finished or interrupted run, from its journal."""

from __future__ import annotations

import json
import mmap
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from llem_cli.output import Output
from llem_cli.runs.layout import RunDir, planned_keys
from llem_cli.runs.record import FINAL_STATUSES
from llem_cli.runs.resolve import resolve_target
from llem_cli.runs.shards import shard_runs
from llem_cli.runs.state import RunState, replay


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists (the run's writer)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: the values of the JSON ``state`` field: stable words for scripts (prose is ``state_detail``);
#: a sharded run's shard may also be ``pending`` (queued in Slurm) or ``not_started``
STATES = ("running", "finished", "aborted", "interrupted", "crashed", "pending", "not_started")


def _phase(state: RunState, alive: bool) -> tuple[str, str]:
    """The run's state as one of :data:`STATES`, and a sentence for people."""
    last = state.last_event or {}
    if state.finished:
        return "finished", "finished"
    if alive and not (state.aborted or state.interrupted):
        return "running", "running"
    if state.aborted:
        reason = last.get("reason") if last.get("type") == "run_aborted" else None
        return "aborted", f"aborted: {reason}" if reason else "aborted by policy"
    if state.interrupted:
        signal = last.get("signal") if last.get("type") == "interrupted" else None
        return "interrupted", f"interrupted by {signal}" if signal else "interrupted"
    return "crashed", "crashed (its process is gone; --resume continues it)"


# ---- lanes ---------------------------------------------------------------------------------------

#: the journal events the lanes' progress is read from (their records come from the replay)
_LANE_EVENTS = frozenset({"run_started", "lanes", "lane_retired", "experiment_started"})
#: a line's type, as the journal writes it (type first); other lines are parsed to find out
_TYPE_PREFIX = re.compile(r'\{"type":\s*"([A-Za-z_]+)"')
#: an event's ``key`` (keys are plain: letters, digits, ``._-``)
_KEY_FIELD = re.compile(r'"key":\s*"([A-Za-z0-9._-]+)"')
#: how the lines of the lane events start as :class:`~llem_cli.runs.journal.Journal` writes
#: them (compact JSON, type first)
_SESSION = b'\n{"type":"run_started"'
_LANES = b'\n{"type":"lanes"'
_RETIRED = b'\n{"type":"lane_retired"'
_STARTED = b'{"type":"experiment_started"'
#: a ``lanes`` event written otherwise (by hand, ``json.dumps`` with its spaces)
_LANES_SPACED = b'{"type": "lanes"'


def _lane_events(journal: Path, in_flight: set[str]) -> list[dict[str, Any]]:
    """The events of :data:`_LANE_EVENTS` that say what the lanes are doing, in order; of the
    ``experiment_started`` ones, only those of ``in_flight`` keys (the only ones a lane can be
    running). Empty when the journal has no ``lanes`` event: a run without lanes.

    Nearly all of a journal is records and probes that say nothing of the lanes: the lines
    as the journal writes them are found by byte searches (:func:`_session_events`), without
    reading, let alone decoding, the rest; a journal written otherwise is read line by line.
    A damaged line is skipped here: the replay reports it.
    """
    try:
        with open(journal, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return []
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if data.find(_LANES) >= 0:
                    return _session_events(data, in_flight)
                if data.find(_LANES_SPACED) < 0:
                    return []
    except (OSError, ValueError):
        return []
    return list(_scanned_events(journal, in_flight))


def line_at(data: mmap.mmap, start: int) -> dict[str, Any] | None:
    """The event on the line that begins at ``start`` (None: damaged)."""
    end = data.find(b"\n", start)
    try:
        event = json.loads(data[start : end if end >= 0 else len(data)])
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _session_events(data: mmap.mmap, in_flight: set[str]) -> list[dict[str, Any]]:
    """:func:`_lane_events` of the latest session (from its ``run_started`` on), by byte search."""
    session = data.rfind(_SESSION) + 1  # 0: the first line, or no run_started at all
    found: list[int] = []  # where the lines begin
    for mark in (_LANES, _RETIRED):
        at = data.find(mark, session)
        while at >= 0:
            found.append(at + 1)
            at = data.find(mark, at + 1)
    for key in in_flight:
        # its latest start: after its latest record (else it would not be in flight), so the
        # last line that names the key from the session on, or one just before it
        needle = b'"key":"' + key.encode() + b'"'
        at = data.rfind(needle, session)
        while at >= 0:
            begins = data.rfind(b"\n", 0, at) + 1
            if data[begins : begins + len(_STARTED)] == _STARTED:
                found.append(begins)
                break
            at = data.rfind(needle, session, begins)
    events = (line_at(data, start) for start in sorted(found))
    return [e for e in events if e is not None and e.get("type") in _LANE_EVENTS]


def _scanned_events(journal: Path, in_flight: set[str]) -> Iterator[dict[str, Any]]:
    """:func:`_lane_events` line by line, for a journal not written as the journal writes."""
    try:
        f = open(journal, encoding="utf-8", errors="surrogateescape", newline="\n")  # noqa: SIM115
    except OSError:
        return
    with f:
        for line in f:
            match = _TYPE_PREFIX.match(line)
            if match is not None:
                kind = match.group(1)
                if kind not in _LANE_EVENTS:
                    continue
                if kind == "experiment_started":
                    key = _KEY_FIELD.search(line)
                    if key is not None and key.group(1) not in in_flight:
                        continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") in _LANE_EVENTS:
                yield event


def _lane_number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def lane_progress(run: RunDir, state: RunState, *, running: bool) -> list[dict[str, Any]]:
    """Each lane of the run's latest session (its ``lanes`` event): GPUs, experiments done in
    it (latest records with its ``lane`` that settle their experiment), the one started there
    and not recorded since (``running`` while the run is alive, else only ``in_flight``), and
    whether it was retired. Empty for a run without lanes."""
    events = _lane_events(run.journal, state.in_flight)
    if not events:
        return []
    layout: list[Any] | None = None
    retired: dict[int, dict[str, Any]] = {}
    started: dict[str, int] = {}  # key -> the lane of its latest start in this session
    for event in events:
        kind = event["type"]
        if kind == "run_started":  # a new session: its own lanes, none retired yet
            layout, retired, started = None, {}, {}
        elif kind == "lanes":
            layout = event.get("lanes") if isinstance(event.get("lanes"), list) else []
        elif kind == "lane_retired":
            number = _lane_number(event.get("lane"))
            if number is not None:
                retired[number] = event
        else:
            number, key = _lane_number(event.get("lane")), event.get("key")
            if number is not None and isinstance(key, str):
                started.pop(key, None)  # re-inserted: the latest start comes last
                started[key] = number
    if layout is None:
        return []
    # one pass over what may be 100k records: count (lane, status) pairs, sort them out after
    pairs = Counter(
        (lane, record.status)
        for record in state.records.values()
        if (lane := getattr(record, "lane", None)) is not None
    )
    done: dict[int, int] = {}
    counts: dict[int, dict[str, int]] = {}
    for (lane, status), n in pairs.items():
        number = _lane_number(lane)
        if number is not None:
            counts.setdefault(number, {})[status] = n
            if status in FINAL_STATUSES:
                done[number] = done.get(number, 0) + n
    for key in state.in_flight:  # a final record, but running again: not done
        record = state.records.get(key)
        number = _lane_number(getattr(record, "lane", None))
        if record is not None and number is not None and record.status in FINAL_STATUSES:
            done[number] -= 1
    lanes = []
    for entry in layout:
        if not isinstance(entry, dict) or _lane_number(entry.get("lane")) is None:
            continue
        number = entry["lane"]
        in_flight = [k for k, n in started.items() if n == number and k in state.in_flight]
        gone = retired.get(number)
        lanes.append(
            {
                "lane": number,
                "gpus": _str_list(entry.get("gpus")),
                "uuids": _str_list(entry.get("uuids")),
                "project": entry.get("project"),
                "done": done.get(number, 0),
                "counts": dict(sorted(counts.get(number, {}).items())),
                "running": in_flight[-1] if in_flight and running else None,
                "in_flight": in_flight,
                "retired": gone is not None,
                "retired_reason": gone.get("reason") if gone else None,
                "given_back": gone.get("given_back") if gone else None,
            }
        )
    return lanes


def _lane_line(lane: dict[str, Any], width: int) -> str:
    """``  lane 1:    GPU 1; 4 done (1 failed); running abc-c2`` (one line per lane; the done
    that were not ok in parentheses)."""
    gpus = lane["gpus"]
    where = f"GPU{'s' if len(gpus) > 1 else ''} {','.join(gpus)}" if gpus else "no GPU"
    others = ", ".join(
        f"{n} {s}" for s, n in lane["counts"].items() if s != "ok" and s in FINAL_STATUSES
    )
    parts = [where, f"{lane['done']} done" + (f" ({others})" if others else "")]
    if lane["retired"]:
        given = f", {lane['given_back']} given back" if lane["given_back"] else ""
        parts.append(f"retired: {lane['retired_reason']}{given}")
    if lane["running"]:
        parts.append(f"running {lane['running']}")
    elif lane["in_flight"]:  # the process is gone: cut short, runs again on --resume
        parts.append(f"was running {', '.join(lane['in_flight'])}")
    elif not lane["retired"]:
        parts.append("idle")
    label = f"lane {lane['lane']}:"
    return f"  {label:<{width}} {'; '.join(parts)}"


def summarize(
    run: RunDir, *, planned: list[str] | None = None, alive: bool | None = None
) -> dict[str, Any]:
    """The status of one run (or shard) as a JSON-ready dict; ``alive`` overrides the check of
    the writer's pid (a shard's process may be on another node)."""
    state = replay(run.journal)
    if planned is None:
        planned = planned_keys(run)
    if planned is None:
        planned = list(state.records)
    counts = state.counts()
    pending = sum(1 for key in planned if state.needs_run(key))
    if alive is None:
        alive = pid_alive(state.writer_pid)
    phase, detail = _phase(state, alive)
    lanes = lane_progress(run, state, running=phase == "running")
    last = state.last_event or {}
    return {
        "run_id": run.run_id,
        "run_dir": str(run.root),
        "state": phase,
        "state_detail": detail,
        "pid": state.writer_pid,
        "process_alive": alive,
        "total": len(planned),
        "done": len(planned) - pending,
        "pending": pending,
        "counts": counts,
        "restarts": state.restarts,
        "in_flight": sorted(state.in_flight),
        "lanes": lanes,
        "last_event": {k: last.get(k) for k in ("type", "ts", "key", "reason") if k in last},
        "journal_defects": [str(d) for d in state.defects],
    }


def show_status(target: Path | None, *, as_json: bool, out: Output) -> int:
    """Print the status; exit 0 (reading a status is not judging the run)."""
    run = resolve_target(target)
    if shard_runs(run):
        from llem_cli.commands.status_shards import show_sharded

        return show_sharded(run, as_json=as_json, out=out)
    info = summarize(run)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return 0
    counts = ", ".join(f"{n} {s}" for s, n in sorted(info["counts"].items())) or "none yet"
    last = info["last_event"]
    out.line(
        f"run {info['run_id']}: {info['state_detail']}"
        + (f" (pid {info['pid']})" if info["process_alive"] else "")
    )
    out.line(f"  directory: {info['run_dir']}")
    out.line(f"  progress:  {info['done']}/{info['total']} done, {info['pending']} pending")
    out.line(f"  records:   {counts}; restarts {info['restarts']}")
    width = max((len(f"lane {lane['lane']}:") for lane in info["lanes"]), default=0)
    width = max(width, len("progress: "))  # the lanes' lines align with the lines above
    for lane in info["lanes"]:
        out.line(_lane_line(lane, width))
    if info["in_flight"] and info["state"] == "running":
        out.line(f"  running:   {', '.join(info['in_flight'])}")
    elif info["in_flight"]:  # the process is gone: these were cut short
        out.line(f"  was running: {', '.join(info['in_flight'])} (will run again on --resume)")
    if last:
        out.line(f"  last event: {last.get('type')} at {last.get('ts')}")
    for defect in info["journal_defects"]:
        out.warn(defect)
    return 0
