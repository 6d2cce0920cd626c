"""The only place llem talks to NVML (nvidia-ml-py, imported as ``pynvml``).

Why a wrapper: NVML answers "not supported" for whole families of calls on older or
consumer GPUs, the library may be missing altogether (no driver, a CI box), and a GPU
can fall off the bus mid-run. Everything above this module must keep working in all
of those cases and report *why* a value is missing instead of a 0. So:

- ``pynvml`` is imported lazily, on the first :func:`open_gpus` call, never at import
  time (``llem validate`` must not need it);
- every binding call goes through :func:`_nvml_errors`, which turns ``pynvml``'s
  error classes into llem's own (:class:`NvmlNotSupported`, :class:`NvmlUnavailable`,
  :class:`NvmlGpuLost`, all :class:`NvmlError`);
- :func:`reading` turns a call into ``(value, None)`` or ``(None, reason)``;
- no NVML at all gives an empty :class:`GpuSet` with a reason, never an exception.

GPU indices are NVML's, which are also ``nvidia-smi``'s and Docker's ``device_ids``
(PCI bus order); ``CUDA_VISIBLE_DEVICES`` does not apply on the host side.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from llem_cli.errors import LlemError, RunAborted

T = TypeVar("T")

# NVML return codes (nvml.h); fixed by the C ABI, so no need to read them from pynvml.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15

_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU: the GPU die sensor

# nvmlClocksEventReason* bits (formerly nvmlClocksThrottleReason*), as short names.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


class NvmlError(LlemError):
    """An NVML call failed; ``code`` is NVML's return code when there was one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NvmlNotSupported(NvmlError):
    """This GPU or driver cannot answer this query (old GPU, missing symbol, no permission)."""


class NvmlUnavailable(NvmlError):
    """No usable NVML on this host: binding, library or driver missing."""


class NvmlGpuLost(NvmlError, RunAborted):
    """The GPU fell off the bus; measuring on it is over for this run (exit 4 if raised)."""


def _translate(exc: BaseException) -> NvmlError:
    """Map a ``pynvml`` exception to llem's error classes, keeping NVML's wording."""
    code = getattr(exc, "value", None)
    text = str(exc)
    if code in (_NOT_SUPPORTED, _FUNCTION_NOT_FOUND):
        # A missing symbol means an older driver: for llem it is the same as unsupported.
        return NvmlNotSupported(f"not supported ({text})", code)
    if code == _NO_PERMISSION:
        return NvmlNotSupported(f"no permission ({text})", code)
    if code in (_LIBRARY_NOT_FOUND, _DRIVER_NOT_LOADED):
        return NvmlUnavailable(f"NVML unavailable ({text})", code)
    if code == _GPU_IS_LOST:
        return NvmlGpuLost(f"GPU lost ({text})", code)
    if code is None:  # e.g. pynvml.NVMLLibraryMismatchError
        return NvmlNotSupported(f"not supported ({text})")
    return NvmlError(f"NVML error {code} ({text})", code)


def _nvml_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Decorate a function that calls the binding so it raises only :class:`NvmlError`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except NvmlError:
            raise
        except Exception as exc:  # pynvml.NVMLError and NVMLLibraryMismatchError
            if type(exc).__module__ != "pynvml":
                raise
            raise _translate(exc) from exc

    return wrapper


def reading(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run one NVML query: ``(value, None)``, or ``(None, reason)`` if NVML said no.

    :class:`NvmlGpuLost` is not swallowed: a lost GPU is a run-level event, not a
    missing value.
    """
    try:
        return call(), None
    except NvmlGpuLost:
        raise
    except NvmlError as exc:
        return None, exc.message


def _load_binding() -> ModuleType:
    """Import ``pynvml`` (lazily: only commands that measure need it)."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise NvmlUnavailable(
            "NVML unavailable (the nvidia-ml-py package is not installed)"
        ) from exc


def _text(value: str | bytes) -> str:
    """Old bindings return bytes, new ones str."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class Gpu:
    """One host GPU, addressed by its NVML index; every method may raise :class:`NvmlError`."""

    def __init__(self, binding: ModuleType, index: int, handle: Any) -> None:
        self._nv = binding
        self.index = index
        self._handle = handle
        self._reasons_fn: str | None = None

    def __repr__(self) -> str:
        return f"Gpu({self.index})"

    @_nvml_errors
    def name(self) -> str:
        """Marketing name, e.g. ``NVIDIA H200``."""
        return _text(self._nv.nvmlDeviceGetName(self._handle))

    @_nvml_errors
    def uuid(self) -> str:
        """``GPU-...`` UUID, stable across reboots (indices are not guaranteed to be)."""
        return _text(self._nv.nvmlDeviceGetUUID(self._handle))

    @_nvml_errors
    def memory_bytes(self) -> tuple[int, int]:
        """``(total, used)`` device memory in bytes."""
        info = self._nv.nvmlDeviceGetMemoryInfo(self._handle)
        return int(info.total), int(info.used)

    @_nvml_errors
    def energy_mj(self) -> int:
        """Total energy counter in millijoules since the driver loaded (Volta and newer).

        A 64-bit unsigned counter: take deltas modulo 2**64 (see :mod:`.energy`).
        """
        return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    @_nvml_errors
    def power_mw(self) -> int:
        """Board power draw in milliwatts as NVML reports it (averaged by the driver)."""
        return int(self._nv.nvmlDeviceGetPowerUsage(self._handle))

    @_nvml_errors
    def temperature_c(self) -> int:
        """GPU die temperature in degrees Celsius."""
        return int(self._nv.nvmlDeviceGetTemperature(self._handle, _TEMPERATURE_GPU))

    @_nvml_errors
    def clock_event_bits(self) -> int:
        """Current clocks event (throttle) reasons bitmask; see :data:`CLOCK_EVENT_REASONS`.

        Uses ``nvmlDeviceGetCurrentClocksEventReasons`` and, on older drivers whose
        library lacks that symbol, its former name ``...ClocksThrottleReasons``.
        """
        names = (
            [self._reasons_fn]
            if self._reasons_fn
            else [
                "nvmlDeviceGetCurrentClocksEventReasons",
                "nvmlDeviceGetCurrentClocksThrottleReasons",
            ]
        )
        last: Exception | None = None
        for name in names:
            fn = getattr(self._nv, name, None)
            if fn is None:
                continue
            try:
                bits = int(fn(self._handle))
            except Exception as exc:
                if getattr(exc, "value", None) != _FUNCTION_NOT_FOUND:
                    raise
                last = exc
                continue
            self._reasons_fn = name
            return bits
        if last is not None:
            raise last
        raise NvmlNotSupported("not supported (binding has no clocks event reasons call)")

    @_nvml_errors
    def compute_processes(self) -> list[tuple[int, int | None]]:
        """``(pid, used memory in bytes or None)`` for every compute process on this GPU.

        Pids are the host's (NVML runs in the host namespace); processes in containers
        show with their host pids.
        """
        last: Exception | None = None
        for name in (
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetComputeRunningProcesses_v2",
            "nvmlDeviceGetComputeRunningProcesses",
        ):
            fn = getattr(self._nv, name, None)
            if fn is None:
                continue
            try:
                procs = fn(self._handle)
            except Exception as exc:
                if getattr(exc, "value", None) != _FUNCTION_NOT_FOUND:
                    raise
                last = exc
                continue
            return [(int(p.pid), p.usedGpuMemory) for p in procs]
        if last is not None:
            raise last
        raise NvmlNotSupported("not supported (binding has no compute processes call)")

    def clock_event_reasons(self) -> list[str]:
        """:meth:`clock_event_bits` decoded to names, ``gpu_idle`` included."""
        return decode_clock_events(self.clock_event_bits())


def decode_clock_events(bits: int) -> list[str]:
    """Names of the set bits; unknown bits as ``0x...`` so nothing is silently dropped."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if bits & bit]
    unknown = bits & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(hex(unknown))
    return names


@dataclass
class GpuSet:
    """The host GPUs llem may measure, from one NVML session.

    ``gpus`` maps NVML index to :class:`Gpu`; it is empty when NVML is unusable, and
    ``reason`` then says why (one line, fit to print once per run). ``missing`` holds,
    per requested index that could not be opened, the reason.
    """

    gpus: dict[int, Gpu] = field(default_factory=dict)
    reason: str | None = None
    missing: dict[int, str] = field(default_factory=dict)
    driver_version: str | None = None
    _binding: ModuleType | None = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        """Whether at least one GPU can be queried."""
        return bool(self.gpus)

    def close(self) -> None:
        """End the NVML session (``nvmlShutdown``; NVML reference-counts init/shutdown)."""
        binding, self._binding = self._binding, None
        if binding is not None:
            # Shutting down: a failure here has nothing left to spoil.
            with contextlib.suppress(Exception):
                binding.nvmlShutdown()

    def __enter__(self) -> GpuSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@_nvml_errors
def _init(binding: ModuleType) -> tuple[int, str | None]:
    """``nvmlInit`` then the GPU count and the driver version (shut down again on failure)."""
    binding.nvmlInit()
    try:
        count = int(binding.nvmlDeviceGetCount())
    except Exception:
        binding.nvmlShutdown()
        raise
    driver, _ = reading(_nvml_errors(lambda: _text(binding.nvmlSystemGetDriverVersion())))
    return count, driver


def open_gpus(indices: Iterable[int] | None = None) -> GpuSet:
    """Open NVML and the GPUs at ``indices`` (None: every GPU). Never raises for a missing NVML.

    An index the host does not have is left out, with its reason in ``missing``.
    """
    try:
        binding = _load_binding()
        count, driver = _init(binding)
    except NvmlError as exc:
        return GpuSet(reason=_no_nvml_reason(exc))
    wanted = list(range(count)) if indices is None else sorted(set(indices))
    result = GpuSet(driver_version=driver, _binding=binding)
    for index in wanted:
        if not 0 <= index < count:
            result.missing[index] = f"GPU {index} not found (host has {count})"
            continue
        handle, why = reading(_nvml_errors(lambda i=index: binding.nvmlDeviceGetHandleByIndex(i)))
        if handle is None:
            result.missing[index] = f"GPU {index}: {why}"
        else:
            result.gpus[index] = Gpu(binding, index, handle)
    if not result.gpus:
        result.reason = (
            "no NVIDIA GPU found by NVML"
            if count == 0
            else "none of the requested GPUs could be opened: " + "; ".join(result.missing.values())
        )
    return result


def _no_nvml_reason(exc: NvmlError) -> str:
    """One plain line for 'no GPU measurement at all'."""
    if exc.code == _LIBRARY_NOT_FOUND:
        return "NVML library libnvidia-ml.so.1 not found (no NVIDIA driver on this host)"
    if exc.code == _DRIVER_NOT_LOADED:
        return "NVIDIA driver not loaded"
    return exc.message
