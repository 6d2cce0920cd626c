"""The result types of an energy window: what was measured, per GPU and summed.

Why a module of its own: these are plain data that callers (the runner, the doctor,
result files) consume; they need neither NVML nor the sampling thread of
:class:`~llem_cli.telemetry.energy.EnergyMonitor` that fills them, nor the arithmetic
in :mod:`llem_cli.telemetry.windows` that judges them. Keeping them apart lets each of
those modules import them without importing one another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from llem_cli.telemetry.series import EnergySeries

Method = Literal["counter", "power_sampling"]
"""How a GPU's energy was obtained: NVML's energy counter, or integrated sampled power."""


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
    its readings span :data:`~llem_cli.telemetry.windows.MIN_SAMPLE_COVERAGE` of the
    window (as sampled power must). ``method`` is ``counter`` when every GPU used the
    counter, ``power_sampling`` when at least one integrated sampled power (the less
    exact method decides), None when there is no energy. ``net_energy_j`` is
    ``energy_j - idle_power_w * duration_s``. ``flags`` are short machine-readable
    tags (``short_window``, ``methods_disagree``, ``counter_reset``, ``counter_stalled``,
    ``foreign_processes``, ``thermal_throttled``, ``below_idle``, ``gpu_lost``,
    ``no_gpu``); ``warnings`` are sentences for people; ``reasons`` maps each field left
    None to why. ``simulated`` is true when the NVML library was llem's stand-in (its
    figures are made up, see :func:`~llem_cli.telemetry.nvml.is_simulated`).
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
    #: with lanes: how many lanes were busy during the window (at most) and the mean power of
    #: the GPUs outside it meanwhile (a hot neighbour changes results: users must see it)
    neighbours: dict[str, Any] | None = None
    #: measured on llem's stand-in NVML (``make demo``'s simulated GPU), not a real GPU
    simulated: bool = False
    #: the window's cumulative energy over time per GPU (bounded; the phases of a client's
    #: ``llem_phases`` are measured from it): kept in memory for the record's builder, never
    #: serialized (not in :meth:`to_dict`)
    series: EnergySeries | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (GPU indices as string keys, as JSON needs); no ``series``."""
        data = asdict(replace(self, series=None))
        del data["series"]
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
