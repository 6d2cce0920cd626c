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


def lane_of(event: dict[str, Any]) -> int | None:
    """The lane an event belongs to (None: a run without lanes, or a run-wide event)."""
    lane = event.get("lane")
    return lane if isinstance(lane, int) and not isinstance(lane, bool) else None


def _gpu_list(labels: Any) -> str:
    """``GPU 2`` / ``GPUs 2,3`` for a list of host GPU labels ('' for none)."""
    if not isinstance(labels, list) or not labels:
        return ""
    return f"GPU{'s' if len(labels) > 1 else ''} {','.join(str(g) for g in labels)}"


def pin_ok(event: dict[str, Any]) -> bool:
    """Whether a ``pin_check`` found the container seeing exactly the lane's GPUs."""
    seen, expected = event.get("seen"), event.get("expected")
    if event.get("status") != "ok" or not isinstance(seen, list) or not isinstance(expected, list):
        return False
    return sorted(map(str, seen)) == sorted(map(str, expected))


def describe(event: dict[str, Any]) -> str | None:
    """One human line for an event (None: not worth a line).

    An event of a lane (``lane`` in it) reads ``[lane n] ...``: with lanes, several
    experiments run at once and their lines interleave.
    """
    line = _describe(event)
    lane = lane_of(event)
    if line is None or lane is None:
        return line
    return f"[lane {lane}] {line}"


def _describe(event: dict[str, Any]) -> str | None:
    kind = event["type"]
    if kind == "run_started":
        verb = "resumed" if event.get("resumed") else "started"
        return (
            f"run {event['run_id']} {verb}: {event['pending']} of {event['total']} experiments "
            f"to run; results in {event['run_dir']}"
        )
    if kind == "experiment_started":
        attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
        gpus = _gpu_list(event.get("gpus"))
        on = f" on {gpus}" if gpus else ""
        return f"[{event['index']}/{event['total']}] {event['key']} {event['backend']}{on}{attempt}"
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
    if kind == "gpu_settings_restored":
        if event.get("ok"):
            return "GPU settings restored to what they were before the run"
        return "GPU settings NOT all restored: " + "; ".join(event.get("problems") or [])
    if kind == "server_start":
        return f"server {event.get('server_id')} of {event['service']} starting"
    if kind == "server_ready":
        pct = event.get("memory_used_pct")
        memory = f", GPU memory {pct:g}% used" if isinstance(pct, int | float) else ""
        return (
            f"server {event.get('server_id')} of {event['service']} ready after "
            f"{event.get('waited_s', 0):g}s{memory}"
        )
    if kind == "server":
        return (
            f"server {event.get('server_id')} of {event['service']} loading "
            f"({event.get('waited_s', 0):g}s)"
        )
    if kind == "lanes":
        lanes = [lane for lane in event.get("lanes") or [] if isinstance(lane, dict)]
        parts = ", ".join(
            f"lane {lane.get('lane')} ({_gpu_list(lane.get('gpus')) or 'no GPU'})" for lane in lanes
        )
        per = event.get("gpus_per_lane")
        each = f" of {per} GPU{'s' if per != 1 else ''}" if isinstance(per, int) else ""
        notes = "".join(f"; {note}" for note in event.get("notes") or [])
        return f"{len(lanes)} lane{'s' if len(lanes) != 1 else ''}{each}: {parts}{notes}"
    if kind == "pin_check":
        if pin_ok(event):
            return None
        seen = event.get("seen")
        sees = "could not be checked" if seen is None else f"sees {seen}"
        status = event.get("status")
        probe = f" (probe {status})" if status and status != "ok" else ""
        return (
            f"{event.get('service')} is not pinned to its GPUs: {sees}{probe}, "
            f"expected {event.get('expected')}"
        )
    if kind == "lane_retired":
        given = event.get("given_back")
        back = f" ({given} given back)" if given else ""
        return (
            f"retired: {event.get('reason')}; its pending experiments go to the other lanes{back}"
        )
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
_ALWAYS_SHOWN = frozenset({"run_finished", "run_aborted", "interrupted", "restart", "lane_retired"})


def needs_attention(event: dict[str, Any]) -> bool:
    """Whether a quiet run (``llem -q run``, cron) still prints this event."""
    kind = event["type"]
    if kind in _ALWAYS_SHOWN:
        return True
    if kind in ("experiment_finished", "skipped", "pruned"):
        return event["record"].get("status") != "ok"
    if kind == "probe":
        return event.get("status") != "ok"
    if kind == "pin_check":
        return not pin_ok(event)
    return False


def describe_verbose(event: dict[str, Any]) -> str | None:
    """The line ``-v`` adds for an event :func:`describe` keeps quiet (a probe or pin check
    that found everything in order), None for the rest."""
    kind = event["type"]
    line = None
    if kind == "probe" and event.get("status") == "ok":
        line = f"probe {event['service']}: ok, max memory {event.get('max_memory_used_pct')}%"
    elif kind == "pin_check" and pin_ok(event):
        line = f"pin check {event.get('service')}: ok, sees {', '.join(map(str, event['seen']))}"
    lane = lane_of(event)
    if line is None or lane is None:
        return line
    return f"[lane {lane}] {line}"


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
        if line is None and self.verbose:
            line = describe_verbose(event)
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


def _run_row_only(inner: Any) -> Any:
    """A progress column shown on the run's row and left blank on a lane's row (a lane has no
    bar, count or ETA: its row says what runs there and for how long)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RunRowOnly(ProgressColumn):
        def __init__(self) -> None:
            super().__init__(table_column=inner.get_table_column())

        def render(self, task: Any) -> Any:
            if "lane" in task.fields:
                return Text("")
            return inner.render(task)

    return RunRowOnly()


class RichReporter:
    """A live display on a terminal: overall bar with ETA, the current experiment and state.

    With lanes (an event carrying ``lane``, or the ``lanes`` event), one row per lane under the
    bar: the lane, its GPUs, the experiment running there and for how long (``-:--:--`` while
    the lane is idle), or why the lane was retired. Without lanes, the single row as always.
    """

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
            _run_row_only(BarColumn(bar_width=24)),
            _run_row_only(MofNCompleteColumn()),
            TimeElapsedColumn(),
            _run_row_only(TextColumn("eta")),
            _run_row_only(TimeRemainingColumn()),
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
        #: lane number -> its row (a progress task), in the order lanes were first heard of
        self.lane_rows: dict[int, Any] = {}
        #: lane number -> what its row shows: GPUs, the key running there, retired reason
        self.lane_gpus: dict[int, str] = {}
        self.lane_running: dict[int, str] = {}
        self.lane_retired: dict[int, str] = {}

    def event(self, event: dict[str, Any]) -> None:
        """Update the bar (and the lanes' rows) and print notable events above it."""
        kind = event["type"]
        if kind == "run_started":
            self.progress.start()
            done = event["total"] - event["pending"]
            self.task = self.progress.add_task(
                "run", total=event["total"], completed=done, status=""
            )
        line = describe(event)
        lane = lane_of(event)
        if kind == "lanes":
            for entry in event.get("lanes") or []:
                number = lane_of(entry) if isinstance(entry, dict) else None
                if number is not None:
                    self._lane_row(number, entry.get("gpus"))
        elif lane is not None:
            self._lane_row(lane, event.get("gpus") if kind == "experiment_started" else None)
        if kind == "experiment_started":
            self.current = f"{event['key']} on {event['backend']}"
            if lane is None:
                self._status(f"running {self.current}")
                return
            self.lane_running[lane] = event["key"]
            gpus = _gpu_list(event.get("gpus"))
            self._lane_status(lane, f"{self.current}", start=True, gpus=gpus or None)
            self._status(self._busy())
            return
        if kind == "restart":
            self.restarts = event["restarts"]
        finished = kind in ("experiment_finished", "pruned", "skipped")
        if finished and self.task is not None and event["record"]["status"] != "interrupted":
            self.progress.advance(self.task)
        if finished and lane is not None:
            record = event["record"]
            if self.lane_running.get(lane) == record.get("key"):
                del self.lane_running[lane]
                self._lane_status(lane, f"idle (last: {record['key']} {record['status']})")
                self._status(self._busy())
        if kind == "lane_retired" and lane is not None:
            self.lane_retired[lane] = str(event.get("reason"))
            self.lane_running.pop(lane, None)
            self._lane_status(lane, f"retired: {event.get('reason')}")
            self._status(self._busy())
        if kind == "waiting":
            if lane is not None:
                self._lane_status(lane, _describe(event) or "", start=None)
            else:
                self._status(line or "")
            return
        if kind == "thermal":
            self._status(f"cooling: {event.get('temp_c')}°C -> {event['target_c']:g}°C")
            if not line:
                return
        if kind == "container":
            if lane is not None:
                self._lane_status(lane, _describe(event) or "", start=None)
            else:
                self._status(line or "")
        if kind == "server":  # a server loading: its own line would repeat every 10 s
            if lane is not None:
                self._lane_status(lane, _describe(event) or "", start=None)
            else:
                self._status(_describe(event) or "")
            return
        if line:
            self.progress.console.print(line, highlight=False, markup=False)

    # ---- the rows -------------------------------------------------------------------------------

    def _lane_row(self, lane: int, gpus: Any) -> None:
        """The lane's row, added the first time the lane is heard of."""
        if lane not in self.lane_gpus or (gpus and not self.lane_gpus[lane]):
            self.lane_gpus[lane] = _gpu_list(gpus)
        if lane in self.lane_rows:
            return
        self.lane_rows[lane] = self.progress.add_task(
            f"lane {lane}", total=None, start=False, lane=lane, status=self._lane_text(lane, "idle")
        )

    def _lane_text(self, lane: int, what: str, gpus: str | None = None) -> str:
        gpus = gpus or self.lane_gpus.get(lane) or "GPU ?"
        return f"{gpus} | {what}"

    def _lane_status(
        self, lane: int, what: str, *, start: bool | None = False, gpus: str | None = None
    ) -> None:
        """Show ``what`` on the lane's row; ``start``: restart its clock (True), stop and blank
        it (False: the lane is idle or retired), or leave it running (None)."""
        if lane in self.lane_retired and not what.startswith("retired"):
            return  # a retired lane's row keeps saying why
        task = self.lane_rows[lane]
        status = self._lane_text(lane, what, gpus)
        if start is None:
            self.progress.update(task, lane=lane, status=status)
        else:
            self.progress.reset(task, start=start, total=None, lane=lane, status=status)

    def _busy(self) -> str:
        """The run's row with lanes: how many lanes are running something."""
        active = len(self.lane_rows) - len(self.lane_retired)
        retired = f", {len(self.lane_retired)} retired" if self.lane_retired else ""
        return f"{len(self.lane_running)} of {active} lanes busy{retired}"

    def _status(self, text: str) -> None:
        if self.task is not None:
            restarts = f" | restarts {self.restarts}" if self.restarts else ""
            self.progress.update(self.task, status=text + restarts)

    def rows(self) -> list[tuple[str, str]]:
        """What each row shows now (description, status), the run's first: for tests and logs."""
        return [
            (str(task.description), str(task.fields.get("status"))) for task in self.progress.tasks
        ]

    def close(self) -> None:
        """Stop the live display, leaving the last state on screen."""
        self.progress.stop()
