"""What ``llem doctor`` says about the host GPUs and what llem will measure on them.

Why a separate report: users must learn *before* a campaign whether energy will come
from the counter, from sampled power, or not at all, rather than find nulls afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from llem_cli.telemetry.energy import DEFAULT_SAMPLE_INTERVAL_S
from llem_cli.telemetry.nvml import Gpu, GpuSet, open_gpus, reading

_MIB = 2**20


@dataclass
class GpuInfo:
    """One host GPU: identity, memory in MiB, and which readings NVML gives.

    ``unsupported`` maps a reading (``energy_counter``, ``power``, ``temperature``,
    ``clock_events``, ``processes``, ``memory``) to why it cannot be read.
    """

    index: int
    name: str | None
    uuid: str | None
    memory_total_mib: int | None
    memory_used_mib: int | None
    energy_counter: bool
    power: bool
    temperature: bool
    unsupported: dict[str, str] = field(default_factory=dict)

    @property
    def energy_method(self) -> str | None:
        """How llem will measure energy here: ``counter``, ``power_sampling`` or None."""
        if self.energy_counter:
            return "counter"
        return "power_sampling" if self.power else None


@dataclass
class HostGpuReport:
    """All host GPUs as NVML sees them; ``reason`` says why there are none."""

    driver_version: str | None
    gpus: list[GpuInfo]
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data for ``llem doctor --json``."""
        data = asdict(self)
        for gpu, info in zip(data["gpus"], self.gpus, strict=True):
            gpu["energy_method"] = info.energy_method
        return data

    def lines(self) -> list[str]:
        """Plain sentences: each GPU, then what will and will not be measured."""
        if not self.gpus:
            return [
                f"GPUs: none ({self.reason}); energy, power and temperature will be "
                "recorded as null"
            ]
        out = [f"NVIDIA driver {self.driver_version or 'unknown'}, {len(self.gpus)} GPU(s)"]
        for g in self.gpus:
            memory = f", {g.memory_total_mib} MiB" if g.memory_total_mib is not None else ""
            out.append(
                f"GPU {g.index}: {g.name or 'unknown'}{memory}; {_energy_line(g)}; "
                f"temperature: {'yes' if g.temperature else 'no'}"
            )
        return out


def _energy_line(g: GpuInfo) -> str:
    if g.energy_counter:
        return "energy: total energy counter"
    if g.power:
        return (
            f"energy: sampled power every {DEFAULT_SAMPLE_INTERVAL_S * 1000:.0f} ms "
            f"({g.unsupported.get('energy_counter', 'no energy counter')})"
        )
    return (
        f"energy: not measurable ({g.unsupported.get('energy_counter', 'no counter')}; "
        f"{g.unsupported.get('power', 'no power reading')})"
    )


def describe_gpus(gpu_set: GpuSet | None = None) -> HostGpuReport:
    """Query every host GPU once (opens and closes NVML unless ``gpu_set`` is given)."""
    owned = gpu_set is None
    gpus = open_gpus() if gpu_set is None else gpu_set
    try:
        infos = [_describe(gpu) for gpu in gpus.gpus.values()]
        return HostGpuReport(gpus.driver_version, infos, gpus.reason)
    finally:
        if owned:
            gpus.close()


def _describe(gpu: Gpu) -> GpuInfo:
    unsupported: dict[str, str] = {}

    def ask(name: str, call: Callable[[], object]) -> object | None:
        value, why = reading(call)
        if why is not None:
            unsupported[name] = why
        return value

    name = ask("name", gpu.name)
    uuid = ask("uuid", gpu.uuid)
    memory = ask("memory", gpu.memory_bytes)
    energy = ask("energy_counter", gpu.energy_mj)
    power = ask("power", gpu.power_mw)
    temp = ask("temperature", gpu.temperature_c)
    ask("clock_events", gpu.clock_event_bits)
    ask("processes", gpu.compute_processes)
    total, used = memory if isinstance(memory, tuple) else (None, None)
    return GpuInfo(
        index=gpu.index,
        name=name if isinstance(name, str) else None,
        uuid=uuid if isinstance(uuid, str) else None,
        memory_total_mib=None if total is None else total // _MIB,
        memory_used_mib=None if used is None else used // _MIB,
        energy_counter=energy is not None,
        power=power is not None,
        temperature=temp is not None,
        unsupported=unsupported,
    )
