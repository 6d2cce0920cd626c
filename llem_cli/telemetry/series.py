"""A window's energy over time: cumulative joules per GPU, kept in bounded memory.

Why a module of its own: :class:`~llem_cli.telemetry.energy.EnergyMonitor` fills it from its
sampler thread, :mod:`llem_cli.telemetry.phases` reads it to measure a client's phases, and
neither needs the other to do so. Nothing here touches NVML or a clock.

Per GPU a window keeps two curves of ``(wall-clock time, joules since the window began)``:

- ``counter``: NVML's energy counter read at each sample, as its delta (modulo 2**64) from the
  reading at the window's start;
- ``sampled``: the trapezoid integral of sampled power up to each sample.

Which one a phase uses is the method the window chose for that GPU (``GpuMeasurement.method``),
so a record's phases and its ``energy_j`` come from the same readings. Times are the host's wall
clock (``time.time()`` read with each sample), the clock a client's ``llem_phases`` are written
in (containers share it), never stepping back within a curve.

**Bounded memory.** A curve stores at most :data:`MAX_SERIES_POINTS` points (16 bytes a point,
so under 0.6 MiB a curve: 30 minutes at the default 20 Hz). When it is full, every other point
is dropped (the first and the last stay) and from then on only every second sample is stored
(then every fourth...): the series keeps covering the whole window, evenly, at half the time
resolution each time. The
values lose nothing (each point is the exact cumulative energy at its time), only the time
resolution at which a phase's ends are interpolated; :meth:`Curve.spacing_s` says what it is.
The last sample is always kept, so a curve always reaches the window's end.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_SERIES_POINTS = 36_000
"""Points a curve stores before it halves its time resolution (30 min at 20 Hz, 1 h at 10 Hz)."""

Points = tuple[Sequence[float], Sequence[float]]
"""A curve as two sequences of one length: wall-clock times (ascending) and cumulative joules."""


class Curve:
    """``(wall time, cumulative joules)`` points of one GPU by one method, bounded in number."""

    __slots__ = ("_joules", "_last", "_since", "_times", "max_points", "samples", "stride")

    def __init__(self, max_points: int = MAX_SERIES_POINTS) -> None:
        if max_points < 4:
            raise ValueError("a curve needs room for at least 4 points")
        self.max_points = max_points
        self._times = array("d")
        self._joules = array("d")
        #: store one sample in ``stride`` (doubles each time the curve is halved)
        self.stride = 1
        #: samples offered since the last one stored
        self._since = 0
        #: the latest sample, stored or not: a curve always ends there
        self._last: tuple[float, float] | None = None
        #: samples offered in all
        self.samples = 0

    def add(self, t: float, joules: float) -> None:
        """Offer the sample ``joules`` at wall time ``t`` (a time before the last one is moved up
        to it: a wall clock stepped back must not make the curve go back in time)."""
        if self._last is not None and t < self._last[0]:
            t = self._last[0]
        self._last = (t, joules)
        self.samples += 1
        self._since += 1
        if self._times and self._since < self.stride:
            return
        self._since = 0
        if len(self._times) >= self.max_points:
            self._halve()
        self._times.append(t)
        self._joules.append(joules)

    def _halve(self) -> None:
        """Keep every other point, the first and the last always; store half as often."""
        last = len(self._times) - 1
        times, joules = self._times[::2], self._joules[::2]
        if last % 2:
            times.append(self._times[last])
            joules.append(self._joules[last])
        self._times, self._joules = times, joules
        self.stride *= 2

    def points(self) -> Points:
        """The stored points, and the latest sample after them if it was not stored."""
        times, joules = self._times, self._joules
        last = self._last
        if last is not None and (not times or times[-1] != last[0] or joules[-1] != last[1]):
            times = times + array("d", [last[0]])
            joules = joules + array("d", [last[1]])
        return times, joules

    def __len__(self) -> int:
        """Points :meth:`points` returns."""
        return len(self.points()[0])

    def spacing_s(self) -> float | None:
        """The mean time between stored points (None: fewer than two)."""
        times, _ = self.points()
        if len(times) < 2:
            return None
        return (times[-1] - times[0]) / (len(times) - 1)


@dataclass
class EnergySeries:
    """A window's curves: per GPU index, by the counter and by sampled power."""

    max_points: int = MAX_SERIES_POINTS
    counter: dict[int, Curve] = field(default_factory=dict)
    sampled: dict[int, Curve] = field(default_factory=dict)

    def add_counter(self, index: int, t: float, joules: float) -> None:
        """GPU ``index``'s counter says ``joules`` since the window began, at wall time ``t``."""
        self._curve(self.counter, index).add(t, joules)

    def add_sampled(self, index: int, t: float, joules: float) -> None:
        """GPU ``index``'s sampled power integrates to ``joules`` since its first reading."""
        self._curve(self.sampled, index).add(t, joules)

    def curve(self, index: int, method: str | None) -> Curve | None:
        """GPU ``index``'s curve by ``method`` (``counter`` or ``power_sampling``), if any."""
        if method == "counter":
            return self.counter.get(index)
        if method == "power_sampling":
            return self.sampled.get(index)
        return None

    def _curve(self, curves: dict[int, Curve], index: int) -> Curve:
        curve = curves.get(index)
        if curve is None:
            curve = curves[index] = Curve(self.max_points)
        return curve


def select_curves(
    series: EnergySeries | None, methods: Mapping[int, str | None]
) -> tuple[dict[int, Points] | None, str | None]:
    """Each GPU's curve by the method its window chose, or None and why one is missing.

    ``methods`` maps every GPU of the window to its method (None: no energy). Every GPU must
    have a curve, as every GPU must have a value for the window's energy: a partial sum would
    understate.
    """
    if series is None:
        return None, "no energy time series for this window"
    if not methods:
        return None, "no GPU in the window"
    curves: dict[int, Points] = {}
    missing: list[str] = []
    for index, method in methods.items():
        curve = series.curve(index, method)
        if curve is None:
            missing.append(f"GPU {index}: no energy readings over time ({method or 'no method'})")
        else:
            curves[index] = curve.points()
    if missing:
        return None, "; ".join(missing)
    return curves, None
