"""Host GPU telemetry: NVML access, energy windows, thermal gating, the doctor's GPU report.

Importing this package does not import ``pynvml``; opening GPUs does.
"""

from llem_cli.telemetry.energy import (
    EnergyMonitor,
    GpuMeasurement,
    IdleBaseline,
    Measurement,
)
from llem_cli.telemetry.gpu_settings import (
    Applied,
    GpuSettings,
    Original,
    SettingRefused,
    SettingsControl,
)
from llem_cli.telemetry.host import GpuInfo, HostGpuReport, describe_gpus
from llem_cli.telemetry.nvml import (
    GpuSet,
    NvmlError,
    NvmlGpuLost,
    NvmlNoPermission,
    NvmlNotSupported,
    NvmlUnavailable,
    open_gpus,
)
from llem_cli.telemetry.settings_state import (
    Entry,
    Owner,
    SettingsBusy,
    StateFile,
    StateFileError,
    restore_orphans,
)
from llem_cli.telemetry.thermal import ThermalStatus, ThermalWait, wait_until_cool

__all__ = [
    "Applied",
    "EnergyMonitor",
    "Entry",
    "GpuInfo",
    "GpuMeasurement",
    "GpuSet",
    "GpuSettings",
    "HostGpuReport",
    "IdleBaseline",
    "Measurement",
    "NvmlError",
    "NvmlGpuLost",
    "NvmlNoPermission",
    "NvmlNotSupported",
    "NvmlUnavailable",
    "Original",
    "Owner",
    "SettingRefused",
    "SettingsBusy",
    "SettingsControl",
    "StateFile",
    "StateFileError",
    "ThermalStatus",
    "ThermalWait",
    "describe_gpus",
    "open_gpus",
    "restore_orphans",
    "wait_until_cool",
]
