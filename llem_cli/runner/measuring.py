"""Host GPU measurement around experiments: thermal gate, idle baseline, energy windows.

A thin adapter between the loop and :mod:`llem_cli.telemetry`: :class:`HostTelemetry` owns the
one EnergyMonitor of a session, says once when nothing can be measured, and
:func:`record_fields` turns a Measurement into the record's fields (null, never 0, for what was
not measured). The loop sees only the :class:`Measuring` protocol, so ``--dry-run`` and the
loop's tests run it with :class:`NoMeasuring` (or a scripted stand-in) and no NVML.

The record's ``phases`` are measured from the window's energy time series
(``Measurement.series``) and the client's ``llem_phases``, which only the record's builder
reads: :func:`record_fields` passes a :class:`~llem_cli.telemetry.phases.PhaseSource` along
under :data:`PHASE_SOURCE`, which :func:`~llem_cli.runner.records.record_from_outcome` takes
out (never serialized), so the loop carries it without knowing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from llem_cli.campaign.model import Campaign
from llem_cli.telemetry import EnergyMonitor, Measurement, ThermalStatus, ThermalWait
from llem_cli.telemetry import wait_until_cool as _wait_until_cool
from llem_cli.telemetry.phases import PhaseSource

Emit = Callable[[dict[str, Any]], None]

PHASE_SOURCE = "_phase_source"
"""The key under which :func:`record_fields` carries the window's :class:`PhaseSource` to the
record's builder (not a record field: ``record_from_outcome`` takes it out)."""


class LogEvent(Protocol):
    """Journals one event; the loop's ``_log`` (a :meth:`Journal.append` that also displays)."""

    def __call__(self, kind: str, /, **fields: Any) -> None:
        """Journal an event of type ``kind`` with ``fields`` as its other keys."""


class Measuring(Protocol):
    """What the loop asks of host measurement around each experiment."""

    def announce(self) -> None:
        """Say once (journaled) what can be measured, before the first experiment."""

    def measure_idle_baseline(self) -> None:
        """``execution.idle_baseline``: idle power once, before the first experiment."""

    def wait_until_cool(self, gpus: list[int] | None) -> ThermalWait | None:
        """``execution.thermal``: wait for the GPUs to cool (None: not configured)."""

    def begin(self, key: str, gpus: list[int] | None) -> None:
        """Open an experiment's energy window, just before its exec."""

    def end(self, key: str) -> Measurement | None:
        """Close the window; what it measured (None: nothing is measured)."""

    def close(self) -> None:
        """Release what measuring holds (the sampler thread, NVML)."""


class NoMeasuring:
    """Measures nothing, says nothing: ``--dry-run`` (no NVML is touched, nothing journaled)."""

    def announce(self) -> None:
        """Nothing to say."""

    def measure_idle_baseline(self) -> None:
        """Nothing to measure."""

    def wait_until_cool(self, gpus: list[int] | None) -> ThermalWait | None:
        """No wait."""
        return None

    def begin(self, key: str, gpus: list[int] | None) -> None:
        """No window."""

    def end(self, key: str) -> Measurement | None:
        """No measurement: the record's figures stay null."""
        return None

    def close(self) -> None:
        """Nothing held."""


class HostTelemetry:
    """The session's view of the host GPUs (opened on first use, closed with the session)."""

    def __init__(
        self,
        campaign: Campaign,
        emit: Emit,
        log: LogEvent,
        *,
        lane_gpus: Sequence[int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.campaign = campaign
        self.emit = emit
        self.log = log  # journaled events
        self.sleep = sleep  # the thermal gate's; a lane's sleep raises when the run stops
        self._monitor: EnergyMonitor | None = None
        #: with lanes: every GPU the lanes own; a window also measures the others meanwhile
        self._lane_gpus = list(lane_gpus) if lane_gpus is not None else None
        self._busy_lock = threading.Lock()
        self._busy: dict[str, int] = {}  # open window -> most windows open at once during it
        self._others: dict[str, int] = {}  # open window -> how many GPUs its shadow window has

    @property
    def monitor(self) -> EnergyMonitor:
        """The EnergyMonitor; opening it says once in the journal what can be measured."""
        if self._monitor is None:
            self._monitor = EnergyMonitor(None)
            reason = self._monitor.unavailable_reason
            if reason:
                self.log(
                    "telemetry",
                    gpus=[],
                    note=f"no host GPU measurement: {reason}; energy, power and "
                    "temperature are recorded as null",
                )
            else:
                gpus = sorted(self._monitor.gpu_set.gpus)
                if self._monitor.gpu_set.simulated:
                    self.log(
                        "telemetry",
                        gpus=gpus,
                        simulated=True,
                        note=f"SIMULATED GPU: measuring host GPUs {gpus} with llem's stand-in "
                        "NVML (not a real GPU): every record is marked measurement.simulated",
                    )
                else:
                    self.log("telemetry", gpus=gpus, note=f"measuring host GPUs {gpus} with NVML")
        return self._monitor

    @property
    def available(self) -> bool:
        """Whether at least one host GPU can be read."""
        return self.monitor.unavailable_reason is None

    def announce(self) -> None:
        """Open NVML now, which journals once what can be measured."""
        _ = self.monitor

    def measure_idle_baseline(self) -> None:
        """``execution.idle_baseline``: idle power once, before the first experiment."""
        seconds = self.campaign.execution.idle_baseline
        if not seconds or not self.available:
            return
        self.emit({"type": "waiting", "seconds": seconds, "why": "idle power baseline"})
        baseline = self.monitor.measure_idle(seconds)
        self.log(
            "telemetry",
            idle_power_w={str(k): round(v, 3) for k, v in baseline.power_w.items()},
            reasons={str(k): v for k, v in baseline.reasons.items()},
            note=f"idle baseline over {seconds:g}s",
        )

    def wait_until_cool(self, gpus: list[int] | None) -> ThermalWait | None:
        """``execution.thermal``: wait for the backend's GPUs to cool (None: not configured)."""
        thermal = self.campaign.execution.thermal
        if thermal is None or not self.available:
            return None
        idle: dict[int, float] | None = None
        baseline = self.monitor.idle_baseline
        if thermal.power_within_idle_pct is not None and baseline is not None:
            idle = dict(baseline.power_w)

        def progress(status: ThermalStatus) -> None:
            hottest = max((t for t in status.temps_c.values() if t is not None), default=None)
            self.emit(
                {
                    "type": "thermal",
                    "waited_s": round(status.waited_s, 1),
                    "temp_c": hottest,
                    "target_c": status.target_temp_c,
                    "ready": status.ready,
                }
            )

        return _wait_until_cool(
            self.monitor.gpu_set,
            max_temp_c=thermal.max_temp_c,
            max_wait_s=thermal.max_wait,
            indices=gpus,
            idle_power_w=idle,
            power_tolerance=(thermal.power_within_idle_pct or 10.0) / 100.0,
            on_progress=progress,
            sleep=self.sleep,
        )

    def begin(self, key: str, gpus: list[int] | None) -> None:
        """Open the experiment's energy window (just before its exec).

        With lanes, a shadow window over the lanes' other GPUs opens with it, and the count
        of windows open at once is kept, for the record's ``measurement.neighbours``.
        """
        self.monitor.begin_window(key, gpus)
        if self._lane_gpus is None:
            return
        with self._busy_lock:
            self._busy[key] = 0
            open_now = len(self._busy)
            for window in self._busy:
                self._busy[window] = max(self._busy[window], open_now)
        mine = set(gpus or ())
        others = [i for i in self._lane_gpus if i not in mine]
        if others and self.available:
            self.monitor.begin_window(_shadow(key), others, keep_series=False)
            self._others[key] = len(others)

    def end(self, key: str) -> Measurement:
        """Close the window and return what it measured."""
        measurement = self.monitor.end_window(key)
        if self._lane_gpus is None:
            return measurement
        with self._busy_lock:
            busy = self._busy.pop(key, 1)
        others = self._others.pop(key, 0)
        neighbours: dict[str, Any] = {"lanes_busy": busy, "other_gpus": others}
        mean: float | None = None
        if others:
            shadow = self.monitor.end_window(_shadow(key))
            if shadow.energy_j is not None and shadow.duration_s > 0:
                mean = shadow.energy_j / shadow.duration_s / others
        neighbours["other_gpus_avg_power_w"] = _round(mean, 3)
        measurement.neighbours = neighbours
        return measurement

    def close(self) -> None:
        """Stop the sampler thread and shut NVML down."""
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None


def _shadow(key: str) -> str:
    """The name of the window over the other lanes' GPUs opened with ``key``."""
    return f"{key}@others"


def record_fields(
    measurement: Measurement | None,
    thermal: ThermalWait | None,
    *,
    includes_model_load: bool | None = None,
) -> dict[str, Any]:
    """The record's energy fields and its ``measurement`` detail (nulls stay nulls).

    ``includes_model_load`` (the backend's ``loads_model``) says what the window holds: with
    true, loading the model is part of ``energy_j``. It is written whether or not the host
    measured anything, since it describes the experiment's exec, not the measurement.
    Under :data:`PHASE_SOURCE` the window's time series goes to the record's builder, which
    measures the client's phases from it. ``measurement.simulated`` says whether the figures
    come from llem's stand-in NVML (true) or the host's driver (false).
    """
    detail: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    phase_source = PhaseSource(measurement)
    if measurement is not None:
        fields = {
            "energy_j": _round(measurement.energy_j),
            "avg_power_w": _round(measurement.avg_power_w),
            "idle_power_w": _round(measurement.idle_power_w),
            "net_energy_j": _round(measurement.net_energy_j),
            "max_temp_c": measurement.max_temp_c,
        }
        detail = {
            "method": measurement.method,
            "gpus": measurement.gpu_indices,
            "counter_energy_j": _round(measurement.counter_energy_j),
            "sampled_energy_j": _round(measurement.sampled_energy_j),
            "window_s": _round(measurement.duration_s),
            "flags": list(measurement.flags),
            "warnings": list(measurement.warnings),
            "reasons": dict(measurement.reasons),
            "clock_events": list(measurement.clock_events),
            "simulated": measurement.simulated,
        }
        if measurement.neighbours is not None:
            detail["neighbours"] = dict(measurement.neighbours)
    if includes_model_load is not None:
        detail["includes_model_load"] = includes_model_load
    if thermal is not None:
        detail.setdefault("flags", [])
        detail["flags"] = [*detail["flags"], *thermal.flags]
        detail["thermal"] = {
            "waited_s": round(thermal.waited_s, 3),
            "start_temp_c": thermal.start_temp_c,
            "end_temp_c": thermal.end_temp_c,
            "timed_out": thermal.timed_out,
            "reason": thermal.reason,
        }
    fields["measurement"] = detail or None
    fields[PHASE_SOURCE] = phase_source
    return fields


#: the record's figures that describe the experiment's window (the idle baseline does not)
_WINDOW_FIELDS = ("energy_j", "avg_power_w", "net_energy_j", "max_temp_c")
_WINDOW_DETAIL = ("counter_energy_j", "sampled_energy_j")


def without_window_figures(fields: dict[str, Any], why: str, flag: str) -> dict[str, Any]:
    """``fields`` with the window's figures null, the reason recorded and a flag raised.

    For a window that measured something else besides the experiment (a container restart
    inside a timed-out exec): its numbers are real, but not the experiment's, and a record
    must not carry a number that was not measured for it.
    """
    detail = dict(fields.get("measurement") or {})
    reasons = dict(detail.get("reasons") or {})
    for name in _WINDOW_FIELDS:
        if fields.get(name) is not None:
            reasons[name] = why
        fields[name] = None
    for name in _WINDOW_DETAIL:
        if detail.get(name) is not None:
            reasons[name] = why
            detail[name] = None
    detail["reasons"] = reasons
    detail["flags"] = [*detail.get("flags", []), flag]
    fields["measurement"] = detail
    fields[PHASE_SOURCE] = PhaseSource(unavailable=why)  # its phases are not the experiment's
    return fields


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)
