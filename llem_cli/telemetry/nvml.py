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

A library that exports the symbol ``llem_fake_nvml`` is llem's own stand-in (the test kit's
``fake_nvml.c``, which ``make demo`` puts on ``LD_LIBRARY_PATH`` on a host without a GPU):
:attr:`GpuSet.simulated` says so, and every measurement taken with it is marked simulated. A
real ``libnvidia-ml`` never has that symbol, so a real run is never marked.

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
_CLOCK_SM = 1  # NVML_CLOCK_SM (nvmlClockType_t)
_CLOCK_MEM = 2  # NVML_CLOCK_MEM

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


class NvmlNoPermission(NvmlNotSupported):
    """NVML refused a call for lack of permission (``NVML_ERROR_NO_PERMISSION``).

    A subclass of :class:`NvmlNotSupported`, so a reader that only wants a value treats it
    as missing; code that changes settings tells it apart.
    """


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
        return NvmlNoPermission(f"no permission ({text})", code)
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

    # ---- settings: power limit and locked clocks (changing them needs root/admin) ----

    @_nvml_errors
    def power_limit_mw(self) -> int:
        """The power management limit in milliwatts (``nvmlDeviceGetPowerManagementLimit``).

        What was last set (or the default); :meth:`enforced_power_limit_mw` is what the
        driver applies once other limits are taken into account.
        """
        return int(self._nv.nvmlDeviceGetPowerManagementLimit(self._handle))

    @_nvml_errors
    def enforced_power_limit_mw(self) -> int:
        """The power limit the driver enforces, mW (``nvmlDeviceGetEnforcedPowerLimit``)."""
        return int(self._nv.nvmlDeviceGetEnforcedPowerLimit(self._handle))

    @_nvml_errors
    def power_limit_constraints_mw(self) -> tuple[int, int]:
        """``(min, max)`` power limit this GPU accepts, in milliwatts."""
        low, high = self._nv.nvmlDeviceGetPowerManagementLimitConstraints(self._handle)
        return int(low), int(high)

    @_nvml_errors
    def set_power_limit_mw(self, limit_mw: int) -> None:
        """Set the power management limit (milliwatts; root/admin; lost on driver reload)."""
        self._nv.nvmlDeviceSetPowerManagementLimit(self._handle, int(limit_mw))

    @_nvml_errors
    def lock_sm_clocks(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the SM clock in ``[min_mhz, max_mhz]`` (``nvmlDeviceSetGpuLockedClocks``).

        Volta and newer; root/admin. NVML has no call that reads the lock back: read
        the clock itself (:meth:`sm_clock_mhz`) and undo with :meth:`reset_sm_clocks`.
        """
        self._nv.nvmlDeviceSetGpuLockedClocks(self._handle, int(min_mhz), int(max_mhz))

    @_nvml_errors
    def reset_sm_clocks(self) -> None:
        """Unlock the SM clock (``nvmlDeviceResetGpuLockedClocks``; root/admin)."""
        self._nv.nvmlDeviceResetGpuLockedClocks(self._handle)

    @_nvml_errors
    def lock_mem_clocks(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the memory clock into ``[min_mhz, max_mhz]`` (``nvmlDeviceSetMemoryLockedClocks``).

        Ampere and newer; root/admin; no getter for the lock, as for :meth:`lock_sm_clocks`.
        """
        self._nv.nvmlDeviceSetMemoryLockedClocks(self._handle, int(min_mhz), int(max_mhz))

    @_nvml_errors
    def reset_mem_clocks(self) -> None:
        """Unlock the memory clock (``nvmlDeviceResetMemoryLockedClocks``; root/admin)."""
        self._nv.nvmlDeviceResetMemoryLockedClocks(self._handle)

    @_nvml_errors
    def supported_mem_clocks_mhz(self) -> list[int]:
        """Memory clocks this GPU can run at, MHz (``nvmlDeviceGetSupportedMemoryClocks``)."""
        return [int(c) for c in self._nv.nvmlDeviceGetSupportedMemoryClocks(self._handle)]

    @_nvml_errors
    def supported_sm_clocks_mhz(self, mem_clock_mhz: int) -> list[int]:
        """SM (graphics) clocks supported with the memory clock ``mem_clock_mhz``, MHz."""
        clocks = self._nv.nvmlDeviceGetSupportedGraphicsClocks(self._handle, int(mem_clock_mhz))
        return [int(c) for c in clocks]

    @_nvml_errors
    def sm_clock_mhz(self) -> int:
        """The SM clock right now, MHz (``nvmlDeviceGetClockInfo(NVML_CLOCK_SM)``)."""
        return int(self._nv.nvmlDeviceGetClockInfo(self._handle, _CLOCK_SM))

    @_nvml_errors
    def mem_clock_mhz(self) -> int:
        """The memory clock right now, MHz (``nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)``)."""
        return int(self._nv.nvmlDeviceGetClockInfo(self._handle, _CLOCK_MEM))


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
    #: how many GPUs NVML sees on the host (0 without NVML), requested or not
    count: int = 0
    _others: dict[int, Gpu] = field(default_factory=dict, repr=False)
    #: the NVML library is llem's stand-in (exports :data:`SIMULATION_MARKER`), not a driver's
    simulated: bool = False

    @property
    def available(self) -> bool:
        """Whether at least one GPU can be queried."""
        return bool(self.gpus)

    def gpu(self, index: int) -> Gpu | None:
        """The GPU at NVML ``index``: one of :attr:`gpus`, else any other host GPU, opened now.

        None when the host has no such GPU, NVML is closed, or its handle cannot be had.
        GPUs opened here are not added to :attr:`gpus` (the GPUs this set measures).
        """
        if index in self.gpus:
            return self.gpus[index]
        if index in self._others:
            return self._others[index]
        binding = self._binding
        if binding is None or not 0 <= index < self.count:
            return None
        handle, _ = reading(_nvml_errors(lambda: binding.nvmlDeviceGetHandleByIndex(index)))
        if handle is None:
            return None
        self._others[index] = Gpu(binding, index, handle)
        return self._others[index]

    def by_uuid(self, uuid: str) -> Gpu | None:
        """The host GPU with this UUID (any index, requested or not), or None if NVML knows none."""
        candidates = [*self.gpus, *(i for i in range(self.count) if i not in self.gpus)]
        for index in candidates:
            gpu = self.gpu(index)
            if gpu is None:
                continue
            try:
                found, _ = reading(gpu.uuid)
            except NvmlGpuLost:
                continue  # a GPU off the bus is not the one asked for, whichever it was
            if found == uuid:
                return gpu
        return None

    def close(self) -> None:
        """End the NVML session (``nvmlShutdown``; NVML reference-counts init/shutdown)."""
        binding, self._binding = self._binding, None
        self._others.clear()
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


#: the symbol only llem's stand-in NVML (llem_testkit/nvml_stub/fake_nvml.c) exports
SIMULATION_MARKER = "llem_fake_nvml"


def is_simulated(binding: ModuleType) -> bool:
    """Whether the library ``binding`` loaded is llem's stand-in NVML (has the marker symbol).

    ``pynvml`` keeps the loaded ``CDLL`` in ``nvmlLib`` (after ``nvmlInit``); a library
    without the symbol, or no library, is real (or absent): never simulated.
    """
    import ctypes

    lib = getattr(binding, "nvmlLib", None)
    if lib is None:
        return False
    try:
        return bool(ctypes.c_int.in_dll(lib, SIMULATION_MARKER).value)
    except (ValueError, AttributeError, TypeError):  # no such symbol: a real library
        return False


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
    result = GpuSet(
        driver_version=driver, _binding=binding, count=count, simulated=is_simulated(binding)
    )
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
