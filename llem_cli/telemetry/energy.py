"""Energy measurement windows over host GPUs, in the manner of Zeus' ``ZeusMonitor``.

``begin_window(key)`` / ``end_window(key) -> Measurement`` bracket one experiment;
windows may overlap (each has its own GPUs). Per GPU, energy comes from:

1. NVML's total energy counter (mJ, Volta and newer): the delta between the two ends
   of the window, taken modulo 2**64 so a wrapped counter still gives the right delta;
2. otherwise, power (mW) sampled by a background thread every ``sample_interval_s``
   (default 100 ms) and integrated with the trapezoid rule.

Where both work both are kept (``counter_energy_j``, ``sampled_energy_j``) and the
window is flagged ``methods_disagree`` when they differ by more than 5 %: NVML's power
reading is a driver-side average on many boards, a known source of error.

A quantity that cannot be measured is ``None`` with the reason in ``reasons``, never 0.

Counter update period: NVML does not document how often the energy counter moves.
llem assumes :data:`COUNTER_UPDATE_PERIOD_S` = 100 ms (the same as the power sampling
default) and flags windows shorter than that ``short_window``; a counter that did not
move at all is never read as 0 J (a powered GPU always draws something).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

from llem_cli.telemetry.nvml import (
    Gpu,
    GpuSet,
    NvmlError,
    NvmlGpuLost,
    decode_clock_events,
    open_gpus,
)

Method = Literal["counter", "power_sampling"]

DEFAULT_SAMPLE_INTERVAL_S = 0.1
"""Power/temperature sampling interval in seconds."""

COUNTER_UPDATE_PERIOD_S = 0.1
"""Assumed update period of NVML's energy counter, seconds (undocumented by NVIDIA)."""

DISAGREEMENT_TOLERANCE = 0.05
"""Relative difference between counter and sampled energy above which a window is flagged."""

MAX_PLAUSIBLE_POWER_W = 5000.0
"""Per-GPU average power above this (watts) means the counter was reset, not wrapped."""

COUNTER_MODULUS = 2**64
"""The energy counter is an unsigned 64-bit number of millijoules."""

MIN_SAMPLE_COVERAGE = 0.9
"""Fraction of a window that power samples must span for the integral to count."""

_THERMAL_EVENTS = {"sw_thermal_slowdown", "hw_thermal_slowdown", "hw_slowdown"}


@dataclass
class GpuMeasurement:
    """One GPU's share of a window.

    Units: ``*_j`` joules, ``avg_power_w`` watts (energy / duration), ``max_temp_c``
    degrees Celsius. ``reasons`` maps a field left ``None`` to why.
    """

    index: int
    energy_j: float | None = None
    method: Method | None = None
    counter_energy_j: float | None = None
    sampled_energy_j: float | None = None
    avg_power_w: float | None = None
    max_temp_c: int | None = None
    clock_events: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass
class Measurement:
    """What one window measured, summed over its GPUs.

    Units: ``duration_s`` seconds (monotonic clock), ``started_at``/``ended_at`` Unix
    epoch seconds, ``energy_j``/``counter_energy_j``/``sampled_energy_j``/``net_energy_j``
    joules, ``avg_power_w``/``idle_power_w`` watts, ``max_temp_c`` degrees Celsius.

    ``energy_j`` is None unless every GPU of the window has a value (a partial sum
    would understate); so is ``max_temp_c``, and a GPU's temperature counts only when
    its readings span :data:`MIN_SAMPLE_COVERAGE` of the window (as sampled power
    must). ``method`` is ``counter`` when every GPU used the counter, ``power_sampling``
    when at least one integrated sampled power (the less exact method decides), None
    when there is no energy. ``net_energy_j`` is
    ``energy_j - idle_power_w * duration_s``. ``flags`` are short machine-readable
    tags (``short_window``, ``methods_disagree``, ``counter_reset``, ``counter_stalled``,
    ``foreign_processes``, ``thermal_throttled``, ``below_idle``, ``gpu_lost``,
    ``no_gpu``); ``warnings`` are sentences for people; ``reasons`` maps each field left
    None to why.
    """

    key: str
    gpu_indices: list[int]
    started_at: float
    ended_at: float
    duration_s: float
    energy_j: float | None = None
    method: Method | None = None
    counter_energy_j: float | None = None
    sampled_energy_j: float | None = None
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    net_energy_j: float | None = None
    max_temp_c: int | None = None
    clock_events: list[str] = field(default_factory=list)
    foreign_pids: dict[int, list[int]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    per_gpu: dict[int, GpuMeasurement] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (GPU indices as string keys, as JSON needs)."""
        data = asdict(self)
        data["per_gpu"] = {str(k): v for k, v in data["per_gpu"].items()}
        data["foreign_pids"] = {str(k): v for k, v in data["foreign_pids"].items()}
        return data


@dataclass
class IdleBaseline:
    """Idle power per GPU in watts, measured over ``duration_s`` seconds."""

    power_w: dict[int, float]
    reasons: dict[int, str]
    duration_s: float
    measurement: Measurement

    def total_w(self, indices: Iterable[int]) -> tuple[float | None, str | None]:
        """Summed idle power of ``indices`` in watts, or ``(None, reason)``."""
        total = 0.0
        for index in indices:
            if index not in self.power_w:
                why = self.reasons.get(index, "not in the baseline")
                return None, f"no idle power for GPU {index}: {why}"
            total += self.power_w[index]
        return total, None


@dataclass
class _Sample:
    """Readings at monotonic time ``t`` (s): power in W, temperature in C, event bits."""

    t: float
    power_w: dict[int, float] = field(default_factory=dict)
    temp_c: dict[int, int] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)


@dataclass
class _Window:
    key: str
    indices: list[int]
    t_begin: float
    wall_begin: float
    counters: dict[int, int] = field(default_factory=dict)
    reasons: dict[int, dict[str, str]] = field(default_factory=dict)
    foreign_pids: dict[int, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


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
                    self.why_not[(index, quantity)] = f"{_LABEL[quantity]} {exc.message}"

    def has(self, index: int, quantity: str) -> bool:
        """Whether ``quantity`` can still be read on GPU ``index``."""
        return (index, quantity) not in self.why_not

    def drop(self, index: int, quantity: str, exc: NvmlError) -> None:
        """Stop asking for ``quantity`` on this GPU; remember why."""
        with self._lock:
            if isinstance(exc, NvmlGpuLost):
                self.lost[index] = exc.message
            self.why_not.setdefault((index, quantity), f"{_LABEL[quantity]} {exc.message}")


_LABEL = {
    "energy": "energy counter:",
    "power": "power reading:",
    "temperature": "temperature:",
    "events": "clocks event reasons:",
}


def _calls(gpu: Gpu) -> dict[str, Callable[[], int]]:
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
    ) -> None:
        self._owns_set = gpu_set is None
        self.gpu_set = gpu_set if gpu_set is not None else open_gpus(gpu_indices)
        self.sample_interval_s = sample_interval_s
        self.idle_baseline: IdleBaseline | None = None
        self._caps = _Capabilities(self.gpu_set.gpus)
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._samples: list[_Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
    ) -> None:
        """Start measuring ``key`` on ``gpu_indices`` (None: all the monitor's GPUs).

        Compute processes already on those GPUs whose pid is not in ``allowed_pids``
        (host pids, e.g. the backend container's) are recorded as a warning: their
        energy would be counted as the experiment's.
        """
        indices = sorted(self.gpu_set.gpus if gpu_indices is None else set(gpu_indices))
        with self._lock:
            if key in self._windows:
                raise ValueError(f"measurement window {key!r} is already open")
        window = _Window(key, indices, 0.0, 0.0)
        self._check_processes(window, set(allowed_pids))
        window.wall_begin = time.time()
        window.t_begin = time.monotonic()
        for index in self._live(indices):
            if self._caps.has(index, "energy"):
                try:
                    window.counters[index] = self.gpu_set.gpus[index].energy_mj()
                except NvmlError as exc:
                    self._caps.drop(index, "energy", exc)
        with self._lock:
            self._windows[key] = window
        self._append(self._sample(window.t_begin))
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
        self._append(self._sample(t_end, window.indices))
        with self._lock:
            del self._windows[key]
            samples = sorted(
                (s for s in self._samples if window.t_begin <= s.t <= t_end), key=lambda s: s.t
            )
            self._trim()
        if not self._windows:
            self._stop_sampler()
        result = self._measure(window, t_end, wall_end, counters, samples)
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
        self.begin_window(key, gpu_indices)
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

    def _sample(self, t: float, indices: Iterable[int] | None = None) -> _Sample:
        """Read power, temperature and event bits now from ``indices`` (None: open windows')."""
        if indices is None:
            with self._lock:
                indices = {i for w in self._windows.values() for i in w.indices}
        sample = _Sample(t)
        for index in self._live(indices):
            gpu = self.gpu_set.gpus[index]
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

    def _append(self, sample: _Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    def _trim(self) -> None:
        """Forget samples older than every open window (caller holds the lock)."""
        if not self._windows:
            self._samples.clear()
            return
        oldest = min(w.t_begin for w in self._windows.values())
        self._samples = [s for s in self._samples if s.t >= oldest]

    def _ensure_sampler(self) -> None:
        if self._thread is not None or not self.gpu_set.gpus:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run_sampler, name="llem-gpu-sampler", daemon=True
        )
        self._thread.start()

    def _run_sampler(self) -> None:
        while not self._stop.wait(self.sample_interval_s):
            self._append(self._sample(time.monotonic()))

    def _stop_sampler(self) -> None:
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
        samples: list[_Sample],
    ) -> Measurement:
        duration = t_end - window.t_begin
        result = Measurement(
            key=window.key,
            gpu_indices=window.indices,
            started_at=window.wall_begin,
            ended_at=wall_end,
            duration_s=duration,
            foreign_pids=window.foreign_pids,
            warnings=list(window.warnings),
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
                self._measure_gpu(gpu, window, duration, counters, samples)
            result.per_gpu[index] = gpu
        _combine(result)
        return result

    def _measure_gpu(
        self,
        gpu: GpuMeasurement,
        window: _Window,
        duration: float,
        counters: dict[int, int],
        samples: list[_Sample],
    ) -> None:
        index = gpu.index
        if index in self._caps.lost:
            gpu.flags.append("gpu_lost")
        short = duration < COUNTER_UPDATE_PERIOD_S
        counter_why = self._caps.why_not.get((index, "energy"), "energy counter: not read")
        if index in window.counters and index in counters:
            gpu.counter_energy_j, counter_why, flag = _counter_energy(
                window.counters[index], counters[index], duration
            )
            if flag:
                gpu.flags.append(flag)
        gpu.sampled_energy_j, sampled_why = _integrate(
            [(s.t, s.power_w[index]) for s in samples if index in s.power_w],
            window.t_begin,
            window.t_begin + duration,
            self._caps.why_not.get((index, "power"), "power reading: no samples"),
        )
        if gpu.counter_energy_j is None:
            gpu.reasons["counter_energy_j"] = counter_why
        if gpu.sampled_energy_j is None:
            gpu.reasons["sampled_energy_j"] = sampled_why
        if short:
            gpu.flags.append("short_window")
        order: list[tuple[Method, float | None]] = [
            ("counter", gpu.counter_energy_j),
            ("power_sampling", gpu.sampled_energy_j),
        ]
        if short:  # below the counter's resolution a power reading is the better estimate
            order.reverse()
        for method, value in order:
            if value is not None:
                gpu.energy_j, gpu.method = value, method
                break
        else:
            why = f"{counter_why}; {sampled_why}"
            if short:
                why = (
                    f"window of {duration * 1000:.0f} ms is shorter than the energy counter's "
                    f"update period (~{COUNTER_UPDATE_PERIOD_S * 1000:.0f} ms); {why}"
                )
            gpu.reasons["energy_j"] = why
        counter_j, sampled_j = gpu.counter_energy_j, gpu.sampled_energy_j
        if (
            counter_j is not None
            and sampled_j is not None
            and not short
            and _disagree(counter_j, sampled_j)
        ):
            gpu.flags.append("methods_disagree")
        if gpu.energy_j is not None and duration > 0:
            gpu.avg_power_w = gpu.energy_j / duration
        else:
            gpu.reasons["avg_power_w"] = gpu.reasons.get("energy_j", "zero-length window")
        gpu.max_temp_c, temp_why = _max_temp(
            [(s.t, s.temp_c[index]) for s in samples if index in s.temp_c],
            window.t_begin,
            window.t_begin + duration,
            self._caps.why_not.get((index, "temperature")),
        )
        if gpu.max_temp_c is None:
            gpu.reasons["max_temp_c"] = temp_why
        bits = 0
        for s in samples:
            bits |= s.events.get(index, 0)
        gpu.clock_events = decode_clock_events(bits)
        if not any(index in s.events for s in samples):
            gpu.reasons["clock_events"] = self._caps.why_not.get(
                (index, "events"), "clocks event reasons: no samples"
            )
        if _THERMAL_EVENTS & set(gpu.clock_events):
            gpu.flags.append("thermal_throttled")

    def _apply_idle(self, result: Measurement, idle_power_w: float | None) -> None:
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


def _counter_energy(
    begin_mj: int, end_mj: int, duration_s: float
) -> tuple[float | None, str, str | None]:
    """Counter delta in joules, or None with the reason and a flag.

    The delta is taken modulo 2**64 (a wrap). A delta that would mean more than
    :data:`MAX_PLAUSIBLE_POWER_W` per GPU is a reset (driver reload), not a wrap.
    """
    delta_mj = (end_mj - begin_mj) % COUNTER_MODULUS
    if delta_mj == 0:
        return (
            None,
            (
                "energy counter: did not advance during the window (a powered GPU "
                "always draws energy)"
            ),
            "counter_stalled",
        )
    joules = delta_mj / 1000.0
    if duration_s > 0 and joules / duration_s > MAX_PLAUSIBLE_POWER_W:
        return (
            None,
            (f"energy counter: went from {begin_mj} to {end_mj} mJ, a reset rather than a wrap"),
            "counter_reset",
        )
    return joules, "", None


def _integrate(
    points: list[tuple[float, float]], t_begin: float, t_end: float, why_missing: str
) -> tuple[float | None, str]:
    """Trapezoid integral in joules of ``(t seconds, power watts)`` points, or None and why."""
    if len(points) < 2:
        return None, why_missing
    span = points[-1][0] - points[0][0]
    duration = t_end - t_begin
    if duration > 0 and span < MIN_SAMPLE_COVERAGE * duration:
        return None, (f"power reading: samples cover {span:.3f} s of the {duration:.3f} s window")
    energy = 0.0
    for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False):
        energy += (t1 - t0) * (p0 + p1) / 2.0
    return energy, ""


def _max_temp(
    points: list[tuple[float, int]], t_begin: float, t_end: float, why_stopped: str | None
) -> tuple[int | None, str]:
    """Highest of ``(t seconds, temperature C)`` points, or None and why.

    The same coverage rule as :func:`_integrate`: readings that stop early (a lost GPU,
    a call that began failing) say nothing about the rest of the window, so the maximum
    counts only when they span :data:`MIN_SAMPLE_COVERAGE` of it. ``why_stopped`` is
    why temperature is no longer read on this GPU, if it is not.
    """
    if not points:
        return None, why_stopped or "temperature: no samples"
    span = points[-1][0] - points[0][0]
    duration = t_end - t_begin
    if duration > 0 and span < MIN_SAMPLE_COVERAGE * duration:
        why = f"temperature: samples cover {span:.3f} s of the {duration:.3f} s window"
        if why_stopped:
            why += f" ({why_stopped.removeprefix(_LABEL['temperature']).strip()})"
        return None, why
    return max(t for _, t in points), ""


def _disagree(counter_j: float, sampled_j: float) -> bool:
    """Whether the two energies differ by more than :data:`DISAGREEMENT_TOLERANCE`."""
    return abs(counter_j - sampled_j) > DISAGREEMENT_TOLERANCE * counter_j


def _combine(result: Measurement) -> None:
    """Sum the per-GPU values into ``result``; a value missing on any GPU stays None."""
    gpus = list(result.per_gpu.values())

    def total(name: str) -> tuple[float | None, str | None]:
        if not gpus:  # a sum over no GPU is not a measured 0 J
            return None, "no GPU in the window"
        values = [getattr(g, name) for g in gpus]
        if all(v is not None for v in values):
            return sum(values), None
        missing = [
            f"GPU {g.index}: {g.reasons.get(name, 'not measured')}"
            for g in gpus
            if getattr(g, name) is None
        ]
        return None, "; ".join(missing)

    for name in ("energy_j", "counter_energy_j", "sampled_energy_j"):
        value, why = total(name)
        setattr(result, name, value)
        if why:
            result.reasons[name] = why
    if result.energy_j is not None:
        methods = {g.method for g in gpus}
        result.method = "counter" if methods == {"counter"} else "power_sampling"
        if result.duration_s > 0:
            result.avg_power_w = result.energy_j / result.duration_s
    if result.avg_power_w is None:
        result.reasons["avg_power_w"] = result.reasons.get("energy_j", "zero-length window")
    # Like energy: a maximum over some GPUs only would understate the window's.
    temps = [g.max_temp_c for g in gpus if g.max_temp_c is not None]
    if not gpus:
        result.reasons["max_temp_c"] = "no GPU in the window"
    elif len(temps) == len(gpus):
        result.max_temp_c = max(temps)
    else:
        result.reasons["max_temp_c"] = "; ".join(
            f"GPU {g.index}: {g.reasons.get('max_temp_c', 'not measured')}"
            for g in gpus
            if g.max_temp_c is None
        )
    seen: list[str] = []
    for g in gpus:
        seen += [e for e in g.clock_events if e not in seen]
        result.flags += [f for f in g.flags if f not in result.flags]
        if "foreign_processes" in g.reasons:
            result.reasons.setdefault("foreign_processes", "")
            result.reasons["foreign_processes"] = "; ".join(
                filter(
                    None,
                    [
                        result.reasons["foreign_processes"],
                        f"GPU {g.index}: {g.reasons['foreign_processes']}",
                    ],
                )
            )
    result.clock_events = seen
