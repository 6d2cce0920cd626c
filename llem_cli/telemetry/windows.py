"""The rules for what counts as measured in an energy window, as pure functions.

Why a module of its own: :class:`~llem_cli.telemetry.energy.EnergyMonitor` talks to
NVML and runs a sampling thread; this module only judges what it collected. Every rule
that decides whether a value is a measurement or ``None`` with a reason lives here, in
one place:

- coverage: sampled power and temperature count only when the readings span
  :data:`MIN_SAMPLE_COVERAGE` of the window;
- counter vs sampling: the counter's delta (modulo 2**64, a stall or reset is no
  value), the trapezoid integral of sampled power, which one a GPU reports (sampling
  below :data:`COUNTER_UPDATE_PERIOD_S`), and when the two disagree;
- the all-GPUs rule: a window's energy and maximum temperature exist only when every
  one of its GPUs has a value (a partial sum or maximum would understate).

Nothing here opens NVML, sleeps or starts a thread (the clock event decoder it borrows
from :mod:`llem_cli.telemetry.nvml` is bit arithmetic), so the rules are testable with
plain numbers, without the compiled stub library.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from llem_cli.telemetry.measurement import GpuMeasurement, Measurement, Method
from llem_cli.telemetry.nvml import decode_clock_events

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
"""Clock event reasons that flag a GPU ``thermal_throttled``."""

LABELS = {
    "energy": "energy counter:",
    "power": "power reading:",
    "temperature": "temperature:",
    "events": "clocks event reasons:",
}
"""Prefix of every reason about a quantity (energy, power, temperature, events)."""


@dataclass
class Sample:
    """Readings at monotonic time ``t`` (s) and wall-clock time ``wall`` (Unix s): power in W,
    temperature in C, event bits, energy counter in mJ."""

    t: float
    power_w: dict[int, float] = field(default_factory=dict)
    temp_c: dict[int, int] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)
    energy_mj: dict[int, int] = field(default_factory=dict)
    wall: float = 0.0


@dataclass
class GpuReadings:
    """One GPU's readings over a window, summed up as they arrive (oldest first).

    Why sums and not the samples: a window may last hours, and a list of every sample would
    grow with it. What the rules below need is kept instead, exactly: the trapezoid integral of
    power and the span of its readings, the hottest temperature and the span of its readings,
    the clock event bits seen. Times are monotonic seconds.
    """

    power_n: int = 0
    power_first_t: float = 0.0
    power_last_t: float = 0.0
    power_last_w: float = 0.0
    energy_j: float = 0.0
    temp_n: int = 0
    temp_first_t: float = 0.0
    temp_last_t: float = 0.0
    temp_max_c: int = 0
    events_bits: int = 0
    events_seen: bool = False

    def add_power(self, t: float, watts: float) -> None:
        """A power reading; extends the trapezoid integral."""
        if self.power_n == 0:
            self.power_first_t = t
        else:
            self.energy_j += (t - self.power_last_t) * (self.power_last_w + watts) / 2.0
        self.power_n += 1
        self.power_last_t, self.power_last_w = t, watts

    def add_temp(self, t: float, celsius: int) -> None:
        """A temperature reading."""
        if self.temp_n == 0:
            self.temp_first_t, self.temp_max_c = t, celsius
        self.temp_n += 1
        self.temp_last_t = t
        self.temp_max_c = max(self.temp_max_c, celsius)

    def add_events(self, bits: int) -> None:
        """A clock event reasons reading."""
        self.events_bits |= bits
        self.events_seen = True

    def add(self, sample: Sample, index: int) -> None:
        """GPU ``index``'s readings in ``sample``."""
        if index in sample.power_w:
            self.add_power(sample.t, sample.power_w[index])
        if index in sample.temp_c:
            self.add_temp(sample.t, sample.temp_c[index])
        if index in sample.events:
            self.add_events(sample.events[index])


def judge_gpu(
    gpu: GpuMeasurement,
    *,
    t_begin: float,
    duration: float,
    counters_begin: Mapping[int, int],
    counters_end: Mapping[int, int],
    readings: GpuReadings,
    why_not: Mapping[tuple[int, str], str],
    lost: Collection[int],
) -> None:
    """Fill ``gpu`` from its readings over the window: energy, method, power, temperature.

    Why one function: the choice between counter and sampled energy, the flags
    (``short_window``, ``methods_disagree``, ``counter_*``, ``thermal_throttled``,
    ``gpu_lost``) and each ``None``'s reason depend on one another, so they are decided
    together, in a fixed order. ``counters_begin``/``counters_end`` are the energy
    counter (mJ) per GPU at the ends of the window of ``duration`` seconds from
    ``t_begin`` (monotonic); ``readings`` are this GPU's readings over the window;
    ``why_not`` maps ``(GPU index, quantity)`` to why that quantity is not read, and
    ``lost`` holds the indices of GPUs that fell off the bus.
    """
    index = gpu.index
    if index in lost:
        gpu.flags.append("gpu_lost")
    short = duration < COUNTER_UPDATE_PERIOD_S
    counter_why = why_not.get((index, "energy"), "energy counter: not read")
    if index in counters_begin and index in counters_end:
        gpu.counter_energy_j, counter_why, flag = _counter_energy(
            counters_begin[index], counters_end[index], duration
        )
        if flag:
            gpu.flags.append(flag)
    gpu.sampled_energy_j, sampled_why = _integral(
        readings,
        t_begin,
        t_begin + duration,
        why_not.get((index, "power"), "power reading: no samples"),
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
    gpu.max_temp_c, temp_why = _hottest(
        readings,
        t_begin,
        t_begin + duration,
        why_not.get((index, "temperature")),
    )
    if gpu.max_temp_c is None:
        gpu.reasons["max_temp_c"] = temp_why
    gpu.clock_events = decode_clock_events(readings.events_bits)
    if not readings.events_seen:
        gpu.reasons["clock_events"] = why_not.get(
            (index, "events"), "clocks event reasons: no samples"
        )
    if _THERMAL_EVENTS & set(gpu.clock_events):
        gpu.flags.append("thermal_throttled")


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
    readings = GpuReadings()
    for t, watts in points:
        readings.add_power(t, watts)
    return _integral(readings, t_begin, t_end, why_missing)


def _integral(
    readings: GpuReadings, t_begin: float, t_end: float, why_missing: str
) -> tuple[float | None, str]:
    """The trapezoid integral of ``readings``' power in joules, or None and why.

    It counts only when the readings span :data:`MIN_SAMPLE_COVERAGE` of the window.
    """
    if readings.power_n < 2:
        return None, why_missing
    span = readings.power_last_t - readings.power_first_t
    duration = t_end - t_begin
    if duration > 0 and span < MIN_SAMPLE_COVERAGE * duration:
        return None, (f"power reading: samples cover {span:.3f} s of the {duration:.3f} s window")
    return readings.energy_j, ""


def _max_temp(
    points: list[tuple[float, int]], t_begin: float, t_end: float, why_stopped: str | None
) -> tuple[int | None, str]:
    """Highest of ``(t seconds, temperature C)`` points, or None and why (see :func:`_hottest`)."""
    readings = GpuReadings()
    for t, celsius in points:
        readings.add_temp(t, celsius)
    return _hottest(readings, t_begin, t_end, why_stopped)


def _hottest(
    readings: GpuReadings, t_begin: float, t_end: float, why_stopped: str | None
) -> tuple[int | None, str]:
    """The highest temperature of ``readings``, or None and why.

    The same coverage rule as :func:`_integral`: readings that stop early (a lost GPU,
    a call that began failing) say nothing about the rest of the window, so the maximum
    counts only when they span :data:`MIN_SAMPLE_COVERAGE` of it. ``why_stopped`` is
    why temperature is no longer read on this GPU, if it is not.
    """
    if readings.temp_n == 0:
        return None, why_stopped or "temperature: no samples"
    span = readings.temp_last_t - readings.temp_first_t
    duration = t_end - t_begin
    if duration > 0 and span < MIN_SAMPLE_COVERAGE * duration:
        why = f"temperature: samples cover {span:.3f} s of the {duration:.3f} s window"
        if why_stopped:
            why += f" ({why_stopped.removeprefix(LABELS['temperature']).strip()})"
        return None, why
    return readings.temp_max_c, ""


def _disagree(counter_j: float, sampled_j: float) -> bool:
    """Whether the two energies differ by more than :data:`DISAGREEMENT_TOLERANCE`."""
    return abs(counter_j - sampled_j) > DISAGREEMENT_TOLERANCE * counter_j


def combine(result: Measurement) -> None:
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
