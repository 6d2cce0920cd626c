"""How a run shows its progress: rich display, plain timestamped lines, or JSON lines.

The runner emits one event dict per step (the journal's events plus transient
ones such as ``waiting``); a reporter only formats them, so the three outputs
can never tell different stories.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol, TextIO

from llem_cli.campaign.durations import format_duration
from llem_cli.runs.record import finite_only


class Reporter(Protocol):
    """Receives every event of a run."""

    def event(self, event: dict[str, Any]) -> None:
        """Show one event."""

    def close(self) -> None:
        """Stop any live display."""


def _safe_write(reporter: PlainReporter | JsonReporter, text: str) -> None:
    """Write, and stop writing if the reader went away: a closed pipe must not end a run."""
    if reporter.stream is None:
        return
    try:
        reporter.stream.write(text)
        reporter.stream.flush()
    except (BrokenPipeError, ValueError, OSError):
        reporter.stream = None


def _params(record: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in (record.get("params") or {}).items())


def describe(event: dict[str, Any]) -> str | None:
    """One human line for an event (None: not worth a line)."""
    kind = event["type"]
    if kind == "run_started":
        verb = "resumed" if event.get("resumed") else "started"
        return (
            f"run {event['run_id']} {verb}: {event['pending']} of {event['total']} experiments "
            f"to run; results in {event['run_dir']}"
        )
    if kind == "experiment_started":
        attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
        return f"[{event['index']}/{event['total']}] {event['key']} {event['backend']}{attempt}"
    if kind in ("experiment_finished", "pruned", "skipped"):
        record = event["record"]
        took = record.get("duration_s")
        took_text = f" in {took:.2f}s" if isinstance(took, int | float) else ""
        error = f": {record['error']}" if record.get("error") else ""
        return (
            f"{record['key']} {record['backend']} {_params(record)} -> "
            f"{record['status']}{took_text}{error}"
        )
    if kind == "restart":
        return (
            f"restarting {event['service']} ({event['reason']}); "
            f"restarts so far: {event['restarts']}"
        )
    if kind == "probe":
        if event.get("status") == "ok":
            return None
        return f"probe {event['service']}: {event.get('detail') or event.get('status')}"
    if kind == "waiting":
        # ``setting``: the campaign setting that asked for the pause (``gap``, ``cycle_gap``),
        # so the user knows which one to change; ``why`` is the older, vaguer field
        return (
            f"waiting {format_duration(event['seconds'])} ({event.get('setting') or event['why']})"
        )
    if kind == "telemetry":
        return event.get("note")
    if kind == "thermal":
        if event.get("ready") and event.get("waited_s", 0) > 0:
            return f"GPUs cooled to {event.get('temp_c')}°C after {event['waited_s']:g}s"
        if not event.get("ready") and event.get("waited_s", 0) == 0:
            return f"waiting for GPUs to cool: {event.get('temp_c')}°C > {event['target_c']:g}°C"
        return None
    if kind == "container":
        return f"container {event['service']}: {event['state']}"
    if kind == "run_finished":
        counts = ", ".join(f"{n} {s}" for s, n in sorted(event["counts"].items())) or "nothing"
        return (
            f"run {event['run_id']} finished: {counts}; restarts {event['restarts']}; "
            f"results in {event['run_dir']}"
        )
    if kind == "run_aborted":
        return f"run {event['run_id']} aborted: {event['reason']} (resume with llem run --resume)"
    if kind == "interrupted":
        return f"run {event['run_id']} interrupted by {event['signal']}; containers removed"
    return None


#: events ``-q`` still shows: how the run ended, and whatever went wrong on the way
_ALWAYS_SHOWN = frozenset({"run_finished", "run_aborted", "interrupted", "restart"})


def needs_attention(event: dict[str, Any]) -> bool:
    """Whether a quiet run (``llem -q run``, cron) still prints this event."""
    kind = event["type"]
    if kind in _ALWAYS_SHOWN:
        return True
    if kind in ("experiment_finished", "skipped", "pruned"):
        return event["record"].get("status") != "ok"
    if kind == "probe":
        return event.get("status") != "ok"
    return False


class PlainReporter:
    """One timestamped line per event: fit for cron mail and log files."""

    def __init__(
        self, stream: TextIO | None = None, *, verbose: bool = False, quiet: bool = False
    ) -> None:
        self.stream: TextIO | None = stream or sys.stdout
        self.verbose = verbose
        self.quiet = quiet

    def event(self, event: dict[str, Any]) -> None:
        """Print the event's line, if it has one (``quiet``: only what needs attention)."""
        if self.quiet and not needs_attention(event):
            return
        line = describe(event)
        if line is None and self.verbose and event["type"] == "probe":
            line = f"probe {event['service']}: ok, max memory {event.get('max_memory_used_pct')}%"
        if line is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _safe_write(self, f"{stamp} {line}\n")

    def close(self) -> None:
        """Nothing to stop."""


class JsonReporter:
    """One JSON object per event on stdout, for scripts."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream: TextIO | None = stream or sys.stdout

    def event(self, event: dict[str, Any]) -> None:
        """Print the event as one JSON line."""
        # strict JSON for the scripts reading it: a result.json's NaN/Infinity become null,
        # as in the journal (json.dumps would write the non-standard NaN / Infinity)
        _safe_write(self, json.dumps(finite_only(event), default=str, allow_nan=False) + "\n")

    def close(self) -> None:
        """Nothing to stop."""


class RichReporter:
    """A live display on a terminal: overall bar with ETA, the current experiment and state."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        from rich.table import Column

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn(
                "{task.fields[status]}",
                table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
            ),
            console=console,
            transient=False,
            expand=True,
        )
        self.task: Any = None
        self.restarts = 0
        self.current = ""

    def event(self, event: dict[str, Any]) -> None:
        """Update the bar and print notable events above it."""
        kind = event["type"]
        if kind == "run_started":
            self.progress.start()
            done = event["total"] - event["pending"]
            self.task = self.progress.add_task(
                "run", total=event["total"], completed=done, status=""
            )
        line = describe(event)
        if kind == "experiment_started":
            self.current = f"{event['key']} on {event['backend']}"
            self._status(f"running {self.current}")
            return
        if kind == "restart":
            self.restarts = event["restarts"]
        finished = kind in ("experiment_finished", "pruned", "skipped")
        if finished and self.task is not None and event["record"]["status"] != "interrupted":
            self.progress.advance(self.task)
        if kind == "waiting":
            self._status(line or "")
            return
        if kind == "thermal":
            self._status(f"cooling: {event.get('temp_c')}°C -> {event['target_c']:g}°C")
            if not line:
                return
        if kind == "container":
            self._status(line or "")
        if line:
            self.progress.console.print(line, highlight=False, markup=False)

    def _status(self, text: str) -> None:
        if self.task is not None:
            restarts = f" | restarts {self.restarts}" if self.restarts else ""
            self.progress.update(self.task, status=text + restarts)

    def close(self) -> None:
        """Stop the live display, leaving the last state on screen."""
        self.progress.stop()
