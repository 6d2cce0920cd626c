"""Thermal gating: wait for the measured GPUs to cool before an experiment starts.

Why: a GPU that starts hot throttles sooner and leaks more power, so experiments run
back to back measure the previous one's heat. Before each experiment llem waits until
every measured GPU is at or below ``max_temp_c`` (and, if asked, draws power within
10 % of its idle baseline), polling NVML, for at most ``max_wait_s``. A timeout is not
an error: the experiment runs and its record is flagged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from llem_cli.telemetry.nvml import GpuSet, NvmlError

DEFAULT_POLL_INTERVAL_S = 1.0
"""Seconds between two NVML polls while waiting."""

DEFAULT_POWER_TOLERANCE = 0.10
"""Power counts as idle within this fraction of the idle baseline."""


@dataclass
class ThermalStatus:
    """One poll: per GPU temperature (degrees C) and power (W), None where unreadable.

    ``waited_s`` seconds since the wait began; ``target_temp_c`` the gate (degrees C).
    """

    waited_s: float
    temps_c: dict[int, int | None]
    power_w: dict[int, float | None]
    target_temp_c: float
    ready: bool


@dataclass
class ThermalWait:
    """The outcome of :func:`wait_until_cool`.

    ``waited_s`` seconds spent waiting; ``start_temp_c`` the hottest measured GPU at the
    first poll, ``end_temp_c`` at the last (degrees C, None if no temperature could be
    read); ``timed_out`` True when ``max_wait_s`` ran out first; ``reason`` says why the
    gate could not be applied (no GPU, temperature unsupported), ``notes`` anything
    partial (power condition dropped on a GPU).
    """

    waited_s: float
    start_temp_c: int | None
    end_temp_c: int | None
    timed_out: bool
    start_temps_c: dict[int, int | None] = field(default_factory=dict)
    reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        """Flags for the experiment's record: ``thermal_timeout`` when the wait ran out."""
        return ["thermal_timeout"] if self.timed_out else []


def _read(call: Callable[[], float]) -> float | None:
    try:
        return call()
    except NvmlError:
        return None


def wait_until_cool(
    gpus: GpuSet,
    *,
    max_temp_c: float,
    max_wait_s: float,
    indices: Iterable[int] | None = None,
    idle_power_w: Mapping[int, float] | None = None,
    power_tolerance: float = DEFAULT_POWER_TOLERANCE,
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    on_progress: Callable[[ThermalStatus], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ThermalWait:
    """Poll until every GPU in ``indices`` (None: all of ``gpus``) is cool enough.

    A GPU is ready when its temperature is <= ``max_temp_c`` and, for GPUs in
    ``idle_power_w`` (watts per index), its power is within ``power_tolerance`` of that
    baseline. A GPU whose temperature cannot be read cannot be gated and is left out
    (with a note); when no GPU can be read the function returns at once with a reason.
    ``on_progress`` receives a :class:`ThermalStatus` after every poll (for the display).
    """
    wanted = sorted(gpus.gpus if indices is None else set(indices))
    measured = [i for i in wanted if i in gpus.gpus]
    notes = [
        f"GPU {i} is not measured: {gpus.missing.get(i, 'not opened')}"
        for i in wanted
        if i not in gpus.gpus
    ]
    start = clock()
    first: ThermalStatus | None = None
    power_dropped: set[int] = set()
    while True:
        status = _poll(
            gpus,
            measured,
            idle_power_w or {},
            power_tolerance,
            max_temp_c,
            clock() - start,
            power_dropped,
        )
        if first is None:
            first = status
            unreadable = [i for i, t in status.temps_c.items() if t is None]
            notes += [f"GPU {i}: temperature not readable, not gated" for i in unreadable]
            measured = [i for i in measured if i not in unreadable]
            if not measured:
                return ThermalWait(
                    waited_s=0.0,
                    start_temp_c=None,
                    end_temp_c=None,
                    timed_out=False,
                    start_temps_c=status.temps_c,
                    notes=notes,
                    reason=gpus.reason or "no GPU temperature can be read; not gated",
                )
        if on_progress is not None:
            on_progress(status)
        waited = clock() - start
        if status.ready or waited >= max_wait_s:
            notes += [
                f"GPU {i}: power not readable, only temperature gated"
                for i in sorted(power_dropped)
            ]
            return ThermalWait(
                waited_s=waited,
                start_temp_c=_hottest(first.temps_c),
                end_temp_c=_hottest(status.temps_c),
                timed_out=not status.ready,
                start_temps_c=first.temps_c,
                notes=notes,
            )
        sleep(min(poll_interval_s, max(0.0, max_wait_s - waited)))


def _poll(
    gpus: GpuSet,
    indices: list[int],
    idle_power_w: Mapping[int, float],
    tolerance: float,
    max_temp_c: float,
    waited_s: float,
    power_dropped: set[int],
) -> ThermalStatus:
    temps: dict[int, int | None] = {}
    power: dict[int, float | None] = {}
    ready = True
    for index in indices:
        gpu = gpus.gpus[index]
        temp = _read(gpu.temperature_c)
        temps[index] = None if temp is None else int(temp)
        if temp is not None and temp > max_temp_c:
            ready = False
        if index in idle_power_w and index not in power_dropped:
            mw = _read(gpu.power_mw)
            if mw is None:
                power_dropped.add(index)
                continue
            watts = power[index] = mw / 1000.0
            baseline = idle_power_w[index]
            if abs(watts - baseline) > tolerance * baseline:
                ready = False
    return ThermalStatus(waited_s, temps, power, max_temp_c, ready)


def _hottest(temps: Mapping[int, int | None]) -> int | None:
    known = [t for t in temps.values() if t is not None]
    return max(known) if known else None
