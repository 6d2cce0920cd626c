"""GPU settings llem applies on the host through NVML: the power limit and locked clocks.

A small typed layer over :mod:`.nvml` (the only module that calls ``pynvml``):

- :class:`GpuSettings`: what one experiment asks of a GPU (``None`` = as the GPU was before
  llem changed it);
- :class:`Original`: what a GPU had before llem's first change, saved in the host-wide state
  file (:mod:`.settings_state`) so that a crashed run's changes can be undone;
- :class:`SettingsControl`: checks permission and values, applies, reads back and restores.

Facts this rests on (NVML API reference, "Device Commands"): every call that changes a GPU
needs root/admin and answers ``NVML_ERROR_NO_PERMISSION`` otherwise; inside a container root
is not enough: the container needs ``CAP_SYS_ADMIN``. A power limit and locked clocks last
until changed, reset, or the driver reloads (reboot); nothing restores them when the process
that set them exits. Locked SM clocks need Volta or newer, locked memory clocks Ampere or
newer. NVML has a getter for the power limit but none for locked clocks: llem cannot read
what lock a GPU had, so restoring clocks means unlocking them (``nvmlDeviceResetGpuLockedClocks``,
``nvmlDeviceResetMemoryLockedClocks``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llem_cli.errors import LlemError
from llem_cli.telemetry.nvml import (
    Gpu,
    GpuSet,
    NvmlError,
    NvmlGpuLost,
    NvmlNoPermission,
    NvmlNotSupported,
    reading,
)

#: how to get the permission NVML wants (one clause, for the end of a message)
PERMISSION_HINT = (
    "run llem as root on the host; inside a container root also needs CAP_SYS_ADMIN "
    "(docker run --cap-add SYS_ADMIN)"
)

_UNKNOWN = object()  # a setting left in an unknown state by a failed call: set it again


class SettingRefused(LlemError):
    """NVML refused a setting, or it read back differently; ``reason`` is one line.

    Fails the experiment it was for (exit code of a failed run), not the run.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _w(mw: int | float) -> str:
    """Milliwatts as watts for a message: ``700 W``, ``312.5 W``."""
    return f"{mw / 1000:g} W"


def _mw(watts: float) -> int:
    """Watts to NVML's integer milliwatts."""
    return int(round(watts * 1000))


@dataclass(frozen=True)
class GpuSettings:
    """What an experiment asks of one GPU; ``None``: as the GPU was before llem changed it.

    ``power_limit_w`` in watts (NVML takes milliwatts: it is rounded to whole mW);
    ``sm_clock_mhz`` and ``mem_clock_mhz`` lock the SM (graphics) and memory clocks at that
    value (minimum = maximum).
    """

    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None

    def __post_init__(self) -> None:
        power = self.power_limit_w
        if power is not None and (
            isinstance(power, bool)
            or not isinstance(power, (int, float))
            or not math.isfinite(power)
            or power <= 0
        ):
            raise ValueError(f"power_limit_w must be a positive number of watts, not {power!r}")
        for name in ("sm_clock_mhz", "mem_clock_mhz"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ValueError(f"{name} must be a positive whole number of MHz, not {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuSettings:
        """From a mapping holding any of the three names (other keys, e.g. params, ignored)."""
        return cls(
            power_limit_w=data.get("power_limit_w"),
            sm_clock_mhz=data.get("sm_clock_mhz"),
            mem_clock_mhz=data.get("mem_clock_mhz"),
        )

    @property
    def empty(self) -> bool:
        """Whether nothing is asked (every value ``None``)."""
        return (
            self.power_limit_w is None and self.sm_clock_mhz is None and self.mem_clock_mhz is None
        )

    def as_dict(self) -> dict[str, float | int | None]:
        """``{"power_limit_w": ..., "sm_clock_mhz": ..., "mem_clock_mhz": ...}``."""
        return {
            "power_limit_w": self.power_limit_w,
            "sm_clock_mhz": self.sm_clock_mhz,
            "mem_clock_mhz": self.mem_clock_mhz,
        }


@dataclass(frozen=True)
class Original:
    """A GPU's settings before llem's first change, and how to put them back.

    ``power_limit_w``: the power limit read with ``nvmlDeviceGetPowerManagementLimit`` (watts,
    to the milliwatt), set again on restore; ``None`` when llem will not touch it or could not
    read it. Clocks: NVML has no getter for locked clocks, so no value is kept; restore
    *resets* them (``nvmlDeviceResetGpuLockedClocks`` / ``nvmlDeviceResetMemoryLockedClocks``),
    which unlocks them. ``reset_sm_clocks`` / ``reset_mem_clocks`` say whether it does: false
    for a clock the run never locks, so a lock an administrator set is left alone.
    """

    power_limit_w: float | None
    reset_sm_clocks: bool = True
    reset_mem_clocks: bool = True

    def to_json(self) -> dict[str, Any]:
        """The state file's ``original`` object."""
        return {
            "power_limit_w": self.power_limit_w,
            "reset_sm_clocks": self.reset_sm_clocks,
            "reset_mem_clocks": self.reset_mem_clocks,
        }

    @classmethod
    def from_json(cls, data: Any) -> Original:
        """Parse :meth:`to_json`'s object; ``ValueError`` (one line) if it is not one."""
        if not isinstance(data, dict):
            raise ValueError("'original' is not an object")
        power = data.get("power_limit_w")
        if power is not None and (
            isinstance(power, bool) or not isinstance(power, (int, float)) or power <= 0
        ):
            raise ValueError(f"'original.power_limit_w' is not a positive number: {power!r}")
        flags = {}
        for name in ("reset_sm_clocks", "reset_mem_clocks"):
            value = data.get(name, True)
            if not isinstance(value, bool):
                raise ValueError(f"'original.{name}' is not true or false: {value!r}")
            flags[name] = value
        return cls(
            power_limit_w=None if power is None else float(power),
            reset_sm_clocks=flags["reset_sm_clocks"],
            reset_mem_clocks=flags["reset_mem_clocks"],
        )

    def describe(self) -> str:
        """What restoring does, for a message: ``power limit 700 W, clocks unlocked``."""
        parts = []
        if self.power_limit_w is not None:
            parts.append(f"power limit {self.power_limit_w:g} W")
        if self.reset_sm_clocks and self.reset_mem_clocks:
            parts.append("clocks unlocked")
        elif self.reset_sm_clocks:
            parts.append("SM clock unlocked")
        elif self.reset_mem_clocks:
            parts.append("memory clock unlocked")
        return ", ".join(parts) or "nothing to restore"


@dataclass(frozen=True)
class Applied:
    """The outcome of :meth:`SettingsControl.apply` on one GPU.

    ``settings``: what llem holds the GPU at afterwards (``None``: as found before llem);
    ``changed``: whether any NVML setter was called; ``warnings``: one line each (a clock
    reading below its lock: power or thermal capping); ``readback``: :meth:`SettingsControl.read`
    afterwards.
    """

    index: int
    settings: GpuSettings
    changed: bool
    warnings: tuple[str, ...] = ()
    readback: dict[str, float | int | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """For a record's ``gpu_settings``: values, ``changed``, ``readback``, ``warnings``."""
        return {
            **self.settings.as_dict(),
            "changed": self.changed,
            "readback": dict(self.readback),
            "warnings": list(self.warnings),
        }


class SettingsControl:
    """Change and restore settings of the GPUs of one :class:`~.nvml.GpuSet` (one host).

    Indices are NVML's. The control remembers what it last applied to each GPU, so that
    :meth:`apply` makes no NVML call for a setting the GPU already has, and the
    :class:`Original` it read for each GPU (:meth:`original`), which a ``None`` setting
    returns to after llem changed it. Every NVML failure becomes one line: a returned
    problem, a warning, or :class:`SettingRefused`. A GPU lost off the bus is raised
    (:class:`~.nvml.NvmlGpuLost`) by every method but :meth:`restore`.
    """

    def __init__(self, gpu_set: GpuSet) -> None:
        self.gpu_set = gpu_set
        self._last: dict[int, dict[str, object]] = {}
        self._originals: dict[int, Original] = {}

    # ---- helpers ----

    def _gpu(self, index: int) -> Gpu:
        gpu = self.gpu_set.gpu(index)
        if gpu is None:
            raise SettingRefused(self._not_found(index))
        return gpu

    def _not_found(self, index: int) -> str:
        if self.gpu_set.reason and not self.gpu_set.count:
            return f"GPU {index}: {self.gpu_set.reason}"
        return f"GPU {index} not found by NVML (the host has {self.gpu_set.count})"

    @staticmethod
    def _label(gpu: Gpu, *, uuid: bool = False) -> str:
        """``GPU 0 (NVIDIA H200)``, or with ``uuid`` ``GPU 0 (GPU-...)``, as far as readable."""
        extra, _ = reading(gpu.uuid if uuid else gpu.name)
        return f"GPU {gpu.index} ({extra})" if extra else f"GPU {gpu.index}"

    def index_of(self, uuid: str) -> int | None:
        """The NVML index of the GPU with this UUID now, or None when NVML knows none."""
        gpu = self.gpu_set.by_uuid(uuid)
        return None if gpu is None else gpu.index

    # ---- checks before a run ----

    def permission_problem(self, indices: Iterable[int]) -> str | None:
        """Why llem may not change these GPUs' settings, one line; None if it may.

        NVML is the judge, not the user id (root in a container without CAP_SYS_ADMIN is
        refused too): each GPU's current power limit is set again, which changes nothing.
        A GPU without power management cannot be judged this way and passes (setting its
        values fails later, with NVML's reason).
        """
        for index in indices:
            gpu = self.gpu_set.gpu(index)
            if gpu is None:
                return self._not_found(index)
            try:
                limit = gpu.power_limit_mw()
            except NvmlNotSupported:
                continue
            except NvmlError as exc:
                return f"{self._label(gpu, uuid=True)}: cannot read its power limit: {exc.message}"
            try:
                gpu.set_power_limit_mw(limit)
            except NvmlNoPermission as exc:
                return (
                    f"no permission to change the settings of {self._label(gpu, uuid=True)}: "
                    f"NVML refused to set its power limit ({exc.message}); {PERMISSION_HINT}"
                )
            except NvmlNotSupported:
                continue
            except NvmlError as exc:
                return (
                    f"{self._label(gpu, uuid=True)}: NVML refused to set its own power limit "
                    f"{_w(limit)} again: {exc.message}"
                )
        return None

    def value_problems(self, indices: Iterable[int], settings: Sequence[GpuSettings]) -> list[str]:
        """Every value NVML says a GPU cannot take, one line each (empty: all fine).

        Power limits against ``nvmlDeviceGetPowerManagementLimitConstraints``; memory clocks
        against ``nvmlDeviceGetSupportedMemoryClocks``; SM clocks against
        ``nvmlDeviceGetSupportedGraphicsClocks`` at the memory clock of the same settings, or,
        without one, at any supported memory clock. A GPU that cannot list them has a
        problem for each value of that kind.
        """
        problems: list[str] = []
        unique = list(dict.fromkeys(settings))
        for index in indices:
            gpu = self.gpu_set.gpu(index)
            if gpu is None:
                problems.append(self._not_found(index))
                continue
            problems.extend(_GpuLimits(gpu, self._label(gpu)).problems(unique))
        return list(dict.fromkeys(problems))

    # ---- reading ----

    def read(self, index: int) -> dict[str, float | int | None]:
        """What the GPU has now: ``power_limit_w``, ``enforced_power_limit_w`` (watts),
        ``sm_clock_mhz``, ``mem_clock_mhz`` (current clocks, not the locks, which NVML
        cannot read); ``None`` for what NVML cannot say."""
        gpu = self._gpu(index)
        limit, _ = reading(gpu.power_limit_mw)
        enforced, _ = reading(gpu.enforced_power_limit_mw)
        sm, _ = reading(gpu.sm_clock_mhz)
        mem, _ = reading(gpu.mem_clock_mhz)
        return {
            "power_limit_w": None if limit is None else limit / 1000,
            "enforced_power_limit_w": None if enforced is None else enforced / 1000,
            "sm_clock_mhz": sm,
            "mem_clock_mhz": mem,
        }

    def original(
        self,
        index: int,
        *,
        power: bool = True,
        sm_clocks: bool = True,
        mem_clocks: bool = True,
    ) -> Original:
        """The GPU's settings now, to save before llem's first change of it.

        Call it before changing the GPU: the control keeps the first one it read for each
        GPU and returns that one afterwards. ``power``, ``sm_clocks``, ``mem_clocks``: whether
        the run may change that setting (a clock it never locks is not unlocked on restore).
        The power limit is read with ``nvmlDeviceGetPowerManagementLimit`` (None when NVML
        cannot); clocks have no getter, so restoring them is a reset (see :class:`Original`).
        """
        if index in self._originals:
            return self._originals[index]
        gpu = self._gpu(index)
        limit: int | None = None
        if power:
            limit, _ = reading(gpu.power_limit_mw)
        found = Original(
            power_limit_w=None if limit is None else limit / 1000,
            reset_sm_clocks=sm_clocks,
            reset_mem_clocks=mem_clocks,
        )
        self._originals[index] = found
        return found

    # ---- changing ----

    def apply(
        self, index: int, settings: GpuSettings, *, current: GpuSettings | None = None
    ) -> Applied:
        """Put the GPU at ``settings``, read each change back; raise :class:`SettingRefused`.

        ``current``: the settings llem last applied to this GPU when the caller tracks them;
        None: what this control last applied (nothing before its first call). A setting the
        GPU already has costs no NVML setter: the power limit is read and compared, a clock
        lock is compared with what llem last applied (NVML cannot read locks). A ``None``
        value after llem changed that setting returns it to the :class:`Original` (power limit
        as read by :meth:`original`, which this call makes first if the caller did not; a
        clock is unlocked).

        Read-back: the power limit must read back equal to the milliwatt; a clock reading above
        its lock fails, one below it is a warning (power or thermal capping, an idle GPU).
        Order: power limit, memory clock, SM clock (supported SM clocks depend on the memory
        clock). On a refusal the settings already changed stay changed (and tracked): restore
        undoes them.
        """
        gpu = self._gpu(index)
        label = self._label(gpu)
        self.original(index)  # kept from before the first change, if the caller did not ask
        known = self._known(index, current)
        warnings: list[str] = []
        changed = self._apply_power(gpu, label, settings.power_limit_w, known, warnings)
        for kind in ("mem", "sm"):
            want = settings.mem_clock_mhz if kind == "mem" else settings.sm_clock_mhz
            changed = self._apply_clock(gpu, label, kind, want, known, warnings) or changed
        return Applied(
            index=index,
            settings=GpuSettings(
                power_limit_w=settings.power_limit_w,
                sm_clock_mhz=settings.sm_clock_mhz,
                mem_clock_mhz=settings.mem_clock_mhz,
            ),
            changed=changed,
            warnings=tuple(warnings),
            readback=self.read(index),
        )

    def _known(self, index: int, current: GpuSettings | None) -> dict[str, object]:
        if current is not None:
            self._last[index] = {
                "power": current.power_limit_w,
                "sm": current.sm_clock_mhz,
                "mem": current.mem_clock_mhz,
            }
        return self._last.setdefault(index, {"power": None, "sm": None, "mem": None})

    def _refuse(self, what: str, label: str, exc: NvmlError) -> SettingRefused:
        hint = f"; {PERMISSION_HINT}" if isinstance(exc, NvmlNoPermission) else ""
        return SettingRefused(f"{label}: NVML refused {what}: {exc.message}{hint}")

    def _apply_power(
        self,
        gpu: Gpu,
        label: str,
        want: float | None,
        known: dict[str, object],
        warnings: list[str],
    ) -> bool:
        if want is None:
            if known["power"] is None:
                return False  # llem never changed it: as found
            original = self._originals.get(gpu.index)
            if original is None or original.power_limit_w is None:
                raise SettingRefused(
                    f"{label}: cannot return the power limit to its original value: "
                    "none was read before llem changed it"
                )
            target, what = _mw(original.power_limit_w), "the original power limit"
        else:
            target, what = _mw(want), f"power_limit_w {want:g}"
        try:
            now = gpu.power_limit_mw()
        except NvmlGpuLost:
            raise
        except NvmlError as exc:
            raise self._refuse(f"{what} (cannot read the power limit)", label, exc) from exc
        if now == target:
            known["power"] = want
            return False
        try:
            gpu.set_power_limit_mw(target)
        except NvmlGpuLost:
            raise
        except NvmlError as exc:
            after, _ = reading(gpu.power_limit_mw)
            if after != now:
                known["power"] = _UNKNOWN  # changed after all, to what llem cannot tell
            raise self._refuse(what, label, exc) from exc
        known["power"] = _UNKNOWN
        try:
            back = gpu.power_limit_mw()
        except NvmlGpuLost:
            raise
        except NvmlError as exc:
            raise self._refuse(f"{what} (cannot read it back)", label, exc) from exc
        if back != target:
            raise SettingRefused(
                f"{label}: power limit reads back {_w(back)} after setting {what} ({_w(target)})"
            )
        known["power"] = want
        enforced, _ = reading(gpu.enforced_power_limit_mw)
        if enforced is not None and enforced < target:
            warnings.append(
                f"{label}: enforced power limit {_w(enforced)} is below the power limit "
                f"{_w(target)} (another limit applies)"
            )
        return True

    def _apply_clock(
        self,
        gpu: Gpu,
        label: str,
        kind: str,
        want: int | None,
        known: dict[str, object],
        warnings: list[str],
    ) -> bool:
        name = "SM" if kind == "sm" else "memory"
        key = "sm_clock_mhz" if kind == "sm" else "mem_clock_mhz"
        last = known[kind]
        if want is None:
            if last is None:
                return False  # llem never locked it: as found
            reset = gpu.reset_sm_clocks if kind == "sm" else gpu.reset_mem_clocks
            known[kind] = _UNKNOWN
            try:
                reset()
            except NvmlGpuLost:
                raise
            except NvmlError as exc:
                raise self._refuse(f"to unlock the {name} clock", label, exc) from exc
            known[kind] = None
            return True
        if last == want:
            return False
        lock = gpu.lock_sm_clocks if kind == "sm" else gpu.lock_mem_clocks
        known[kind] = _UNKNOWN
        try:
            lock(want, want)
        except NvmlGpuLost:
            raise
        except NvmlError as exc:
            raise self._refuse(f"{key} {want}", label, exc) from exc
        known[kind] = want
        clock, why = reading(gpu.sm_clock_mhz if kind == "sm" else gpu.mem_clock_mhz)
        if clock is None:
            warnings.append(f"{label}: {name} clock locked at {want} MHz but not read back: {why}")
        elif clock > want:
            raise SettingRefused(
                f"{label}: {name} clock reads {clock} MHz after locking it at {want} MHz"
            )
        elif clock < want:
            warnings.append(
                f"{label}: {name} clock reads {clock} MHz, below its lock at {want} MHz "
                "(power or thermal capping, or the GPU is idle)"
            )
        return True

    # ---- restoring ----

    def restore(self, index: int, original: Original) -> list[str]:
        """Put the GPU back to ``original``: power limit set again, clocks unlocked.

        Returns the problems, one line each (empty: restored). Never raises for a GPU's
        failure, a GPU lost off the bus included, so a caller restoring several GPUs
        restores all it can. A clock reset NVML does not support on this GPU is no problem:
        such a clock cannot have been locked.
        """
        gpu = self.gpu_set.gpu(index)
        if gpu is None:
            return [f"{self._not_found(index)}; its settings were not restored"]
        try:
            label = self._label(gpu, uuid=True)
        except NvmlGpuLost as exc:
            return [f"GPU {index}: settings not restored: {exc.message}"]
        problems: list[str] = []
        if original.power_limit_w is not None:
            target = _mw(original.power_limit_w)
            try:
                if gpu.power_limit_mw() != target:
                    gpu.set_power_limit_mw(target)
                    back = gpu.power_limit_mw()
                    if back != target:
                        problems.append(
                            f"{label}: power limit reads back {_w(back)} after restoring "
                            f"{_w(target)}"
                        )
            except NvmlError as exc:
                hint = f"; {PERMISSION_HINT}" if isinstance(exc, NvmlNoPermission) else ""
                problems.append(
                    f"{label}: power limit not restored to {_w(target)}: {exc.message}{hint}"
                )
        for flag, reset, name in (
            (original.reset_sm_clocks, gpu.reset_sm_clocks, "SM"),
            (original.reset_mem_clocks, gpu.reset_mem_clocks, "memory"),
        ):
            if not flag:
                continue
            try:
                reset()
            except NvmlNoPermission as exc:
                problems.append(
                    f"{label}: {name} clock not unlocked: {exc.message}; {PERMISSION_HINT}"
                )
            except NvmlNotSupported:
                continue
            except NvmlError as exc:
                problems.append(f"{label}: {name} clock not unlocked: {exc.message}")
        self._last.pop(index, None)
        return problems


class _GpuLimits:
    """One GPU's allowed values, each list fetched from NVML once, for :meth:`value_problems`."""

    def __init__(self, gpu: Gpu, label: str) -> None:
        self.gpu = gpu
        self.label = label
        self._power: tuple[int, int] | str | None = None
        self._mem: list[int] | str | None = None
        self._sm: dict[int, list[int] | str] = {}

    def _fetch(self, call: Any) -> Any:
        try:
            return call()
        except NvmlGpuLost:
            raise
        except NvmlError as exc:
            return exc.message

    def power_range(self) -> tuple[int, int] | str:
        if self._power is None:
            self._power = self._fetch(self.gpu.power_limit_constraints_mw)
        return self._power

    def mem_clocks(self) -> list[int] | str:
        if self._mem is None:
            self._mem = self._fetch(self.gpu.supported_mem_clocks_mhz)
        return self._mem

    def sm_clocks(self, mem: int) -> list[int] | str:
        if mem not in self._sm:
            self._sm[mem] = self._fetch(lambda: self.gpu.supported_sm_clocks_mhz(mem))
        return self._sm[mem]

    def problems(self, settings: Iterable[GpuSettings]) -> list[str]:
        out: list[str] = []
        for s in settings:
            if s.power_limit_w is not None:
                out.extend(self._power_problem(s.power_limit_w))
            if s.mem_clock_mhz is not None:
                out.extend(self._mem_problem(s.mem_clock_mhz))
            if s.sm_clock_mhz is not None:
                out.extend(self._sm_problem(s.sm_clock_mhz, s.mem_clock_mhz))
        return out

    def _power_problem(self, watts: float) -> list[str]:
        limits = self.power_range()
        if isinstance(limits, str):
            return [
                f"power_limit_w {watts:g}: {self.label} cannot report its power limit range: "
                f"{limits}"
            ]
        low, high = limits
        if low <= _mw(watts) <= high:
            return []
        return [
            f"power_limit_w {watts:g} is out of range for {self.label}: "
            f"allowed {_w(low)} to {_w(high)}"
        ]

    def _mem_problem(self, mhz: int) -> list[str]:
        clocks = self.mem_clocks()
        if isinstance(clocks, str):
            return [f"mem_clock_mhz {mhz}: {self.label} cannot list its memory clocks: {clocks}"]
        if mhz in clocks:
            return []
        return [
            f"mem_clock_mhz {mhz} is not a supported memory clock of {self.label}: "
            f"supported {_clock_list(clocks, mhz)}"
        ]

    def _sm_problem(self, mhz: int, mem: int | None) -> list[str]:
        if mem is not None:
            mems = self.mem_clocks()
            if not isinstance(mems, str) and mem not in mems:
                return []  # the memory clock's own problem says it all
            where = f"at memory clock {mem} MHz"
            listed = self.sm_clocks(mem)
            if isinstance(listed, str):
                return [
                    f"sm_clock_mhz {mhz}: {self.label} cannot list its SM clocks {where}: {listed}"
                ]
            allowed = set(listed)
        else:
            where = "at any memory clock"
            mems = self.mem_clocks()
            if isinstance(mems, str):
                return [f"sm_clock_mhz {mhz}: {self.label} cannot list its memory clocks: {mems}"]
            allowed = set()
            for m in mems:
                listed = self.sm_clocks(m)
                if isinstance(listed, str):
                    return [
                        f"sm_clock_mhz {mhz}: {self.label} cannot list its SM clocks at memory "
                        f"clock {m} MHz: {listed}"
                    ]
                allowed.update(listed)
        if mhz in allowed:
            return []
        return [
            f"sm_clock_mhz {mhz} is not a supported SM clock of {self.label} {where}: "
            f"supported {_clock_list(sorted(allowed), mhz)}"
        ]


def _clock_list(clocks: Iterable[int], near: int) -> str:
    """Supported clocks for a message: all of a short list, else the range and the nearest."""
    values = sorted(set(clocks))
    if not values:
        return "none"
    if len(values) <= 8:
        return ", ".join(str(v) for v in values) + " MHz"
    below = [v for v in values if v < near]
    above = [v for v in values if v > near]
    nearest = ([below[-1]] if below else []) + ([above[0]] if above else [])
    return (
        f"{values[0]} to {values[-1]} MHz ({len(values)} values; nearest "
        + " and ".join(str(v) for v in nearest)
        + ")"
    )
