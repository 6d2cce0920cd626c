"""Host GPU telemetry: NVML access, energy windows, thermal gating, the doctor's GPU report.

Importing this package does not import ``pynvml``; opening GPUs does.
"""

from llem_cli.telemetry.energy import (
    EnergyMonitor,
    GpuMeasurement,
    IdleBaseline,
    Measurement,
)
from llem_cli.telemetry.host import GpuInfo, HostGpuReport, describe_gpus
from llem_cli.telemetry.nvml import (
    GpuSet,
    NvmlError,
    NvmlGpuLost,
    NvmlNotSupported,
    NvmlUnavailable,
    open_gpus,
)
from llem_cli.telemetry.thermal import ThermalStatus, ThermalWait, wait_until_cool

__all__ = [
    "EnergyMonitor",
    "GpuInfo",
    "GpuMeasurement",
    "GpuSet",
    "HostGpuReport",
    "IdleBaseline",
    "Measurement",
    "NvmlError",
    "NvmlGpuLost",
    "NvmlNotSupported",
    "NvmlUnavailable",
    "ThermalStatus",
    "ThermalWait",
    "describe_gpus",
    "open_gpus",
    "wait_until_cool",
]
