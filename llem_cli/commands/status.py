"""``llem status``: progress of a running, finished or interrupted run, from its journal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from llem_cli.output import Output
from llem_cli.runs.layout import RunDir, planned_keys
from llem_cli.runs.resolve import resolve_target
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


#: the values of the JSON ``state`` field: stable words for scripts (prose is ``state_detail``)
STATES = ("running", "finished", "aborted", "interrupted", "crashed")


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


def summarize(run: RunDir) -> dict[str, Any]:
    """The status of one run as a JSON-ready dict."""
    state = replay(run.journal)
    planned = planned_keys(run)
    if planned is None:
        planned = list(state.records)
    counts = state.counts()
    pending = sum(1 for key in planned if state.needs_run(key))
    alive = pid_alive(state.writer_pid)
    phase, detail = _phase(state, alive)
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
        "last_event": {k: last.get(k) for k in ("type", "ts", "key", "reason") if k in last},
        "journal_defects": [str(d) for d in state.defects],
    }


def show_status(target: Path | None, *, as_json: bool, out: Output) -> int:
    """Print the status; exit 0 (reading a status is not judging the run)."""
    info = summarize(resolve_target(target))
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
    if info["in_flight"] and info["state"] == "running":
        out.line(f"  running:   {', '.join(info['in_flight'])}")
    elif info["in_flight"]:  # the process is gone: these were cut short
        out.line(f"  was running: {', '.join(info['in_flight'])} (will run again on --resume)")
    if last:
        out.line(f"  last event: {last.get('type')} at {last.get('ts')}")
    for defect in info["journal_defects"]:
        out.warn(defect)
    return 0
