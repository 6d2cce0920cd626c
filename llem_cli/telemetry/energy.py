"""Energy measurement windows over host GPUs, in the manner of Zeus' ``ZeusMonitor``.

``begin_window(key)`` / ``end_window(key) -> Measurement`` bracket one experiment;
windows may overlap (each has its own GPUs). Per GPU, energy comes from:

1. NVML's total energy counter (mJ, Volta and newer): the delta between the two ends
   of the window, taken modulo 2**64 so a wrapped counter still gives the right delta;
2. otherwise, power (mW) sampled by a background thread every ``sample_interval_s``
   (default 50 ms) and integrated with the trapezoid rule.

The sampler also reads each GPU's energy counter, and every window keeps its cumulative
energy over time per GPU, by both methods, with the wall-clock time of each sample
(:class:`~llem_cli.telemetry.series.EnergySeries`, ``Measurement.series``): the phases a
client reports in its ``result.json`` are measured from it
(:mod:`llem_cli.telemetry.phases`). The sampler runs on a fixed cadence (a late tick does
not push the next ones back): 20 Hz by default, so that a window's series has at least
10 samples a second even with a late tick and the ends of a short window. Memory stays
bounded however long a window lasts: a window keeps running sums of its readings
(:class:`~llem_cli.telemetry.windows.GpuReadings`), not its samples, and its series halves
its time resolution whenever a curve holds
:data:`~llem_cli.telemetry.series.MAX_SERIES_POINTS` points (36,000: 30 min at 20 Hz, so
the first hour keeps at least 10 Hz, the next two 5 Hz...). A window that needs no series
(the idle baseline, a lane's window over the other lanes' GPUs) keeps none.

Where both work both are kept (``counter_energy_j``, ``sampled_energy_j``) and the
window is flagged ``methods_disagree`` when they differ by more than 5 %: NVML's power
reading is a driver-side average on many boards, a known source of error.

A quantity that cannot be measured is ``None`` with the reason in ``reasons``, never 0.

Counter update period: NVML does not document how often the energy counter moves.
llem assumes :data:`COUNTER_UPDATE_PERIOD_S` = 100 ms and flags windows shorter than that
``short_window``; a counter that did not move at all is never read as 0 J (a powered GPU
always draws something).

Where things live: this module holds the NVML side (reading counters, the sampling
thread, foreign processes); :mod:`llem_cli.telemetry.windows` holds the pure rules that
turn readings into values or reasons (coverage, counter vs sampling, every GPU or
none); :mod:`llem_cli.telemetry.measurement` holds the result types. Their public names
are re-exported here, so ``from llem_cli.telemetry.energy import ...`` keeps working.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from llem_cli.telemetry.measurement import GpuMeasurement, IdleBaseline, Measurement, Method
from llem_cli.telemetry.nvml import (
    Gpu,
    GpuSet,
    NvmlError,
    NvmlGpuLost,
    open_gpus,
)
from llem_cli.telemetry.series import MAX_SERIES_POINTS, EnergySeries
from llem_cli.telemetry.windows import (
    COUNTER_MODULUS,
    COUNTER_UPDATE_PERIOD_S,
    DISAGREEMENT_TOLERANCE,
    LABELS,
    MAX_PLAUSIBLE_POWER_W,
    MIN_SAMPLE_COVERAGE,
    GpuReadings,
    Sample,
    combine,
    judge_gpu,
)

__all__ = [
    "COUNTER_MODULUS",
    "COUNTER_UPDATE_PERIOD_S",
    "DEFAULT_SAMPLE_INTERVAL_S",
    "DISAGREEMENT_TOLERANCE",
    "MAX_PLAUSIBLE_POWER_W",
    "MIN_SAMPLE_COVERAGE",
    "EnergyMonitor",
    "GpuMeasurement",
    "IdleBaseline",
    "Measurement",
    "Method",
]

DEFAULT_SAMPLE_INTERVAL_S = 0.05
"""Sampling interval in seconds (power, temperature, event bits, energy counter): 20 Hz, twice
the 10 Hz a window's energy time series must have at least."""


@dataclass
class _Window:
    """An open window: its GPUs, start times, what was read at the start and since.

    ``counters`` are the energy counters (mJ) read at ``t_begin``; ``readings`` each GPU's
    readings since, summed up; ``series`` its cumulative energy over time; ``reasons``,
    ``foreign_pids`` and ``warnings`` record what the process check found, to be copied
    into the :class:`Measurement`.
    """

    key: str
    indices: list[int]
    t_begin: float
    wall_begin: float
    counters: dict[int, int] = field(default_factory=dict)
    readings: dict[int, GpuReadings] = field(default_factory=dict)
    series: EnergySeries | None = field(default_factory=EnergySeries)
    reasons: dict[int, dict[str, str]] = field(default_factory=dict)
    foreign_pids: dict[int, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def take(self, sample: Sample) -> None:
        """Add ``sample``'s readings of this window's GPUs (samples arrive oldest first)."""
        if sample.t < self.t_begin:
            return
        for index in self.indices:
            readings = self.readings.get(index)
            if readings is None:
                readings = self.readings[index] = GpuReadings()
            had_power = readings.power_n
            readings.add(sample, index)
            if self.series is None:
                continue
            if readings.power_n > had_power:
                self.series.add_sampled(index, sample.wall, readings.energy_j)
            if index in self.counters and index in sample.energy_mj:
                delta_mj = (sample.energy_mj[index] - self.counters[index]) % COUNTER_MODULUS
                self.series.add_counter(index, sample.wall, delta_mj / 1000.0)


class _Capabilities:
    """Which readings each GPU answers; probed once, demoted when a call starts failing."""

    QUANTITIES = ("energy", "power", "temperature", "events")

    def __init__(self, gpus: dict[int, Gpu]) -> None:
        self._lock = threading.Lock()
        self.why_not: dict[tuple[int, str], str] = {}
        self.lost: dict[int, str] = {}
        for index, gpu in gpus.items():
            for quantity, call in _calls(gpu).items():
                try:
                    call()
                except NvmlGpuLost as exc:
                    self.lost[index] = exc.message
                    self.why_not[(index, quantity)] = exc.message
                except NvmlError as exc:
                    self.why_not[(index, quantity)] = f"{LABELS[quantity]} {exc.message}"

    def has(self, index: int, quantity: str) -> bool:
        """Whether ``quantity`` can still be read on GPU ``index``."""
        return (index, quantity) not in self.why_not

    def drop(self, index: int, quantity: str, exc: NvmlError) -> None:
        """Stop asking for ``quantity`` on this GPU; remember why."""
        with self._lock:
            if isinstance(exc, NvmlGpuLost):
                self.lost[index] = exc.message
            self.why_not.setdefault((index, quantity), f"{LABELS[quantity]} {exc.message}")


def _calls(gpu: Gpu) -> dict[str, Callable[[], int]]:
    """The NVML reading behind each quantity, so probing and sampling name them alike."""
    return {
        "energy": gpu.energy_mj,
        "power": gpu.power_mw,
        "temperature": gpu.temperature_c,
        "events": gpu.clock_event_bits,
    }


class EnergyMonitor:
    """Measurement windows over host GPUs; one per run, closed at the end (or ``with``).

    ``gpu_indices`` (None: all) are the GPUs the monitor may measure; each window picks
    a subset. Without NVML the monitor still works: every window reports ``None``
    values with :attr:`unavailable_reason` as the reason.
    """

    def __init__(
        self,
        gpu_indices: Iterable[int] | None = None,
        *,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        gpu_set: GpuSet | None = None,
        max_series_points: int = MAX_SERIES_POINTS,
    ) -> None:
        self._owns_set = gpu_set is None
        self.gpu_set = gpu_set if gpu_set is not None else open_gpus(gpu_indices)
        self.sample_interval_s = sample_interval_s
        self.max_series_points = max_series_points
        self.idle_baseline: IdleBaseline | None = None
        self._caps = _Capabilities(self.gpu_set.gpus)
        # held while a sample is read and handed to the windows, so they get samples in order
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # starting and stopping the sampler (a window may open in one lane as another closes)
        self._sampler_lock = threading.Lock()

    @property
    def unavailable_reason(self) -> str | None:
        """Why nothing can be measured (print once per run), or None when some GPU works."""
        return self.gpu_set.reason

    def capabilities(self) -> dict[int, dict[str, str | None]]:
        """Per GPU and quantity (energy, power, temperature, events): None if readable, or why."""
        return {
            index: {q: self._caps.why_not.get((index, q)) for q in _Capabilities.QUANTITIES}
            for index in self.gpu_set.gpus
        }

    # -- windows -------------------------------------------------------------------

    def begin_window(
        self,
        key: str,
        gpu_indices: Iterable[int] | None = None,
        *,
        allowed_pids: Collection[int] = (),
        keep_series: bool = True,
    ) -> None:
        """Start measuring ``key`` on ``gpu_indices`` (None: all the monitor's GPUs).

        Compute processes already on those GPUs whose pid is not in ``allowed_pids``
        (host pids, e.g. the backend container's) are recorded as a warning: their
        energy would be counted as the experiment's. ``keep_series`` False: the window
        keeps no energy time series (``Measurement.series`` None; its figures are the same).
        """
        indices = sorted(self.gpu_set.gpus if gpu_indices is None else set(gpu_indices))
        with self._lock:
            if key in self._windows:
                raise ValueError(f"measurement window {key!r} is already open")
        series = EnergySeries(self.max_series_points) if keep_series else None
        window = _Window(key, indices, 0.0, 0.0, series=series)
        self._check_processes(window, set(allowed_pids))
        with self._lock:
            if key in self._windows:
                raise ValueError(f"measurement window {key!r} is already open")
            window.wall_begin = time.time()
            window.t_begin = time.monotonic()
            for index in self._live(indices):
                if self._caps.has(index, "energy"):
                    try:
                        window.counters[index] = self.gpu_set.gpus[index].energy_mj()
                    except NvmlError as exc:
                        self._caps.drop(index, "energy", exc)
            self._windows[key] = window
            sample = self._sample(window.t_begin, window.wall_begin, energy=window.counters)
            self._deliver(sample)
        self._ensure_sampler()

    def end_window(self, key: str, *, idle_power_w: float | None = None) -> Measurement:
        """Stop measuring ``key`` and compute its :class:`Measurement`.

        ``idle_power_w`` (watts, summed over the window's GPUs) overrides the idle
        baseline from :meth:`measure_idle` for ``net_energy_j``.
        """
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                raise KeyError(f"measurement window {key!r} was never begun")
            t_end = time.monotonic()
            wall_end = time.time()
            counters: dict[int, int] = {}
            for index in window.counters:
                try:
                    counters[index] = self.gpu_set.gpus[index].energy_mj()
                except NvmlError as exc:
                    self._caps.drop(index, "energy", exc)
            self._deliver(self._sample(t_end, wall_end, window.indices, energy=counters))
            del self._windows[key]
        self._stop_sampler(only_if_idle=True)
        result = self._measure(window, t_end, wall_end, counters)
        self._apply_idle(result, idle_power_w)
        return result

    def measure_idle(
        self,
        duration_s: float,
        gpu_indices: Iterable[int] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> IdleBaseline:
        """Measure idle power over ``duration_s`` seconds and keep it as the baseline.

        Idle power of a GPU = its window energy / duration (watts). Later windows use
        it for ``idle_power_w`` and ``net_energy_j`` (summed over their own GPUs).
        """
        key = f"__idle__{os.getpid()}_{time.monotonic_ns()}"
        self.begin_window(key, gpu_indices, keep_series=False)
        sleep(duration_s)
        measurement = self.end_window(key)
        power: dict[int, float] = {}
        reasons: dict[int, str] = {}
        for index in measurement.gpu_indices:
            gpu = measurement.per_gpu.get(index)
            if gpu is not None and gpu.avg_power_w is not None:
                power[index] = gpu.avg_power_w
            else:
                reasons[index] = (
                    gpu.reasons.get("energy_j", "not measured")
                    if gpu
                    else measurement.reasons.get("energy_j", "not measured")
                )
        self.idle_baseline = IdleBaseline(power, reasons, measurement.duration_s, measurement)
        return self.idle_baseline

    def close(self) -> None:
        """Stop sampling and, if the monitor opened NVML, close it."""
        self._stop_sampler()
        if self._owns_set:
            self.gpu_set.close()

    def __enter__(self) -> EnergyMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sampling ------------------------------------------------------------------

    def _live(self, indices: Iterable[int]) -> list[int]:
        return [i for i in indices if i in self.gpu_set.gpus and i not in self._caps.lost]

    def _sample(
        self,
        t: float,
        wall: float,
        indices: Iterable[int] | None = None,
        *,
        energy: dict[int, int] | None = None,
    ) -> Sample:
        """Read power, temperature, event bits and energy counters now (caller holds the lock).

        ``indices`` None: the GPUs of every open window. ``energy``: counters the caller has
        just read (a window's ends, where a failed read is judged); without it the counters
        are read here, and a failed read only leaves a gap in the series (a GPU that is lost
        excepted): the window's energy comes from its ends, and one bad reading mid-window
        must not cost the counter for the rest of the run.
        """
        if indices is None:
            indices = {i for w in self._windows.values() for i in w.indices}
        sample = Sample(t, wall=wall)
        for index in self._live(indices):
            gpu = self.gpu_set.gpus[index]
            if energy is not None:
                if index in energy:
                    sample.energy_mj[index] = energy[index]
            elif self._caps.has(index, "energy"):
                try:
                    sample.energy_mj[index] = gpu.energy_mj()
                except NvmlGpuLost as exc:
                    self._caps.drop(index, "energy", exc)
                except NvmlError:
                    pass
            for quantity, target, convert in (
                ("power", sample.power_w, lambda mw: mw / 1000.0),
                ("temperature", sample.temp_c, int),
                ("events", sample.events, int),
            ):
                if not self._caps.has(index, quantity):
                    continue
                try:
                    target[index] = convert(_calls(gpu)[quantity]())
                except NvmlError as exc:
                    self._caps.drop(index, quantity, exc)
        return sample

    def _deliver(self, sample: Sample) -> None:
        """Hand ``sample`` to every open window (caller holds the lock)."""
        for window in self._windows.values():
            window.take(sample)

    def _ensure_sampler(self) -> None:
        with self._sampler_lock:
            if self._thread is not None or not self.gpu_set.gpus:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run_sampler, name="llem-gpu-sampler", daemon=True
            )
            self._thread.start()

    def _run_sampler(self) -> None:
        """Sample every ``sample_interval_s`` on a fixed cadence: a tick that comes late (a busy
        interpreter) does not delay the next ones; after a long stall one tick follows at once,
        and the cadence resumes from there (no burst to make up the missed ones)."""
        interval = self.sample_interval_s
        due = time.monotonic() + interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            with self._lock:
                if self._windows:
                    self._deliver(self._sample(time.monotonic(), time.time()))
            due += interval
            now = time.monotonic()
            if due < now:
                due = now

    def _stop_sampler(self, *, only_if_idle: bool = False) -> None:
        """Stop the sampler thread (``only_if_idle``: unless a window is open by then)."""
        with self._sampler_lock:
            if only_if_idle:
                with self._lock:
                    if self._windows:
                        return
            thread, self._thread = self._thread, None
            if thread is not None:
                self._stop.set()
                thread.join()

    # -- processes -----------------------------------------------------------------

    def _check_processes(self, window: _Window, allowed: set[int]) -> None:
        for index in self._live(window.indices):
            try:
                procs = self.gpu_set.gpus[index].compute_processes()
            except NvmlError as exc:
                window.reasons.setdefault(index, {})["foreign_processes"] = (
                    f"could not list compute processes: {exc.message}"
                )
                continue
            foreign = [(pid, mem) for pid, mem in procs if pid not in allowed]
            if not foreign:
                continue
            window.foreign_pids[index] = [pid for pid, _ in foreign]
            listed = ", ".join(
                f"pid {pid}" + (f" ({mem / 2**20:.0f} MiB)" if mem else "") for pid, mem in foreign
            )
            window.warnings.append(
                f"GPU {index}: other compute processes at the start of the measurement "
                f"({listed}); their energy is counted too"
            )

    # -- computing -----------------------------------------------------------------

    def _measure(
        self,
        window: _Window,
        t_end: float,
        wall_end: float,
        counters: dict[int, int],
    ) -> Measurement:
        """Build the window's :class:`Measurement`: per GPU by :func:`judge_gpu`, then summed.

        GPUs that are not open (or no NVML at all) get reasons here, as only the monitor
        knows why; everything that judges readings is in :mod:`~llem_cli.telemetry.windows`.
        """
        duration = t_end - window.t_begin
        result = Measurement(
            key=window.key,
            gpu_indices=window.indices,
            started_at=window.wall_begin,
            ended_at=wall_end,
            duration_s=duration,
            foreign_pids=window.foreign_pids,
            warnings=list(window.warnings),
            series=window.series,
            simulated=self.gpu_set.simulated,
        )
        if window.foreign_pids:
            result.flags.append("foreign_processes")
        if not self.gpu_set.gpus:
            result.flags.append("no_gpu")
            why = self.gpu_set.reason or "no GPU"
            for name in ("energy_j", "avg_power_w", "max_temp_c"):
                result.reasons[name] = why
            return result
        for index in window.indices:
            gpu = GpuMeasurement(index)
            gpu.reasons.update(window.reasons.get(index, {}))
            if index not in self.gpu_set.gpus:
                why = self.gpu_set.missing.get(index, f"GPU {index} is not measured")
                for name in ("energy_j", "avg_power_w", "max_temp_c"):
                    gpu.reasons[name] = why
            else:
                judge_gpu(
                    gpu,
                    t_begin=window.t_begin,
                    duration=duration,
                    counters_begin=window.counters,
                    counters_end=counters,
                    readings=window.readings.get(index, GpuReadings()),
                    why_not=self._caps.why_not,
                    lost=self._caps.lost,
                )
            result.per_gpu[index] = gpu
        combine(result)
        return result

    def _apply_idle(self, result: Measurement, idle_power_w: float | None) -> None:
        """Set ``idle_power_w`` and ``net_energy_j`` from the override or the idle baseline."""
        why: str | None = None
        if idle_power_w is None:
            if self.idle_baseline is None:
                why = "no idle baseline measured"
            else:
                idle_power_w, why = self.idle_baseline.total_w(result.gpu_indices)
        result.idle_power_w = idle_power_w
        if idle_power_w is None:
            result.reasons["idle_power_w"] = why or "no idle baseline"
            result.reasons["net_energy_j"] = result.reasons["idle_power_w"]
        elif result.energy_j is None:
            result.reasons["net_energy_j"] = result.reasons.get("energy_j", "no energy")
        else:
            result.net_energy_j = result.energy_j - idle_power_w * result.duration_s
            if result.net_energy_j < 0:
                result.flags.append("below_idle")
