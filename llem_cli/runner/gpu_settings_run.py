"""GPU settings in a run: checked before anything starts, applied per experiment, restored.

``gpu_settings`` axes (power limit, locked clocks) are params of each configuration; this module
is the run's side of them, over :mod:`llem_cli.telemetry.gpu_settings` (NVML) and
:mod:`llem_cli.telemetry.settings_state` (the host-wide file of originals):

- :func:`restore_left_changed`: what a crashed run left changed and no live run owns is
  restored first (``llem run``, ``llem down``, ``llem doctor``), one line per GPU;
- :meth:`SettingsKeeper.preflight`: permission (NVML is the judge) and every value against
  NVML's constraints for the GPUs the run will use: exit 3 or 2 before any container starts;
- :meth:`SettingsKeeper.apply`: before an experiment, on its GPUs only: the original of a GPU
  is saved (fsynced, with this run as owner) before its first change; the settings are set,
  read back, and returned for the record; a refusal fails that experiment;
- :meth:`SettingsKeeper.restore`: every GPU this run changed, on every way out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llem_cli.campaign.expansion import Config
from llem_cli.campaign.model import Campaign
from llem_cli.errors import EnvironmentProblem, UsageProblem
from llem_cli.telemetry.gpu_settings import GpuSettings, Original, SettingRefused, SettingsControl
from llem_cli.telemetry.nvml import GpuSet, open_gpus
from llem_cli.telemetry.settings_state import Owner, StateFile, restore_orphans

SETTING_NAMES = ("power_limit_w", "sm_clock_mhz", "mem_clock_mhz")


def settings_of(campaign: Campaign, config: Config) -> GpuSettings:
    """The ``gpu_settings`` of a configuration (its params of those names)."""
    if campaign.gpu_settings is None:
        return GpuSettings()
    names = campaign.gpu_settings.axes()
    return GpuSettings.from_dict({n: config.params.get(n) for n in names})


def restore_left_changed(state: StateFile | None = None) -> list[str]:
    """Restore what crashed runs left changed on this host (their owners are gone); one line
    per GPU. Cheap when there is nothing: NVML is opened only when the state file has an
    orphan."""
    state = state or StateFile()
    if not state.orphans():
        return []
    gpus = open_gpus()
    try:
        return restore_orphans(state, SettingsControl(gpus))
    finally:
        gpus.close()


class SettingsKeeper:
    """One run's GPU settings: what it saved, applied and must restore. Thread-safe (lanes)."""

    def __init__(self, campaign: Campaign, run_dir: Path, *, state: StateFile | None = None):
        assert campaign.gpu_settings is not None
        self.campaign = campaign
        axes = campaign.gpu_settings.axes()
        self.may_lock_sm = any(v is not None for v in axes.get("sm_clock_mhz", []))
        self.may_lock_mem = any(v is not None for v in axes.get("mem_clock_mhz", []))
        self.may_set_power = any(v is not None for v in axes.get("power_limit_w", []))
        self.state = state or StateFile()
        self.owner = Owner.current(run_dir)
        self._gpus: GpuSet | None = None
        self._control: SettingsControl | None = None
        self._claimed: dict[int, tuple[str, Original]] = {}
        self._lock = threading.Lock()

    # ---- NVML ----

    @property
    def control(self) -> SettingsControl:
        """The NVML control of the host's GPUs (opened on first use)."""
        if self._control is None:
            gpus = open_gpus()
            if not gpus.gpus:
                gpus.close()
                raise EnvironmentProblem(
                    f"gpu_settings needs host GPUs, but NVML reports none ({gpus.reason})",
                    hint="check the driver with 'llem doctor', or remove gpu_settings",
                )
            self._gpus, self._control = gpus, SettingsControl(gpus)
        return self._control

    def host_indices(self) -> list[int]:
        """Every GPU index NVML reports (the GPUs of an unpinned run)."""
        _ = self.control
        assert self._gpus is not None
        return sorted(self._gpus.gpus)

    # ---- before the run ----

    def preflight(self, indices: Sequence[int] | None, configs: Iterable[Config]) -> None:
        """Permission, then every value, for the GPUs the run will use: exit 3 or 2 now."""
        used = list(indices) if indices is not None else self.host_indices()
        problem = self.control.permission_problem(used)
        if problem:
            raise EnvironmentProblem(problem)
        wanted = list(dict.fromkeys(settings_of(self.campaign, c) for c in configs))
        problems = self.control.value_problems(used, wanted)
        if problems:
            raise UsageProblem(
                "gpu_settings: " + "; ".join(problems),
                hint="choose values within what NVML allows for these GPUs ('llem doctor' lists "
                "them)",
            )

    # ---- per experiment ----

    def apply(self, config: Config, indices: Sequence[int] | None) -> dict[str, Any]:
        """Put the experiment's GPUs at its settings; the record's ``gpu_settings``.

        Raises :class:`SettingRefused` (the experiment fails, nothing runs in it). The original
        of each GPU is in the state file (fsynced) before the GPU's first change.
        """
        wanted = settings_of(self.campaign, config)
        used = list(indices) if indices is not None else self.host_indices()
        with self._lock:
            per_gpu: dict[str, Any] = {}
            warnings: list[str] = []
            changed = False
            for index in used:
                self._claim(index)
                applied = self.control.apply(index, wanted)
                changed = changed or applied.changed
                warnings += applied.warnings
                per_gpu[str(index)] = applied.readback
        return {
            **wanted.as_dict(),
            "changed": changed,
            "gpus": per_gpu,
            "warnings": warnings,
        }

    def _claim(self, index: int) -> None:
        """Save GPU ``index``'s original in the state file before llem first changes it."""
        if index in self._claimed:
            return
        control = self.control
        assert self._gpus is not None
        gpu = self._gpus.gpu(index)
        if gpu is None:
            raise SettingRefused(f"GPU {index}: NVML does not know it on this host")
        uuid = gpu.uuid()
        if any(entry.uuid == uuid for entry in self.state.orphans()):
            # a stopped run left this GPU changed: its saved original is the GPU's true one,
            # and must be put back before this run reads "the original" from the GPU
            restore_orphans(self.state, control)
        original = control.original(
            index,
            power=self.may_set_power,
            sm_clocks=self.may_lock_sm,
            mem_clocks=self.may_lock_mem,
        )
        if not self.state.claim(uuid, index, original, self.owner):
            raise SettingRefused(
                f"GPU {index} ({uuid}) is left changed by a stopped run whose settings could "
                "not be restored; run 'llem down' and see what it says"
            )
        self._claimed[index] = (uuid, original)

    # ---- the end ----

    def restore(self) -> list[str]:
        """Every GPU this run changed back to its original, entries cleared; problems as lines.

        Never raises for one GPU, so the others are restored; a GPU whose restore failed
        keeps its entry, for ``llem down`` to try again.
        """
        problems: list[str] = []
        with self._lock:
            if self._control is not None:
                for index, (uuid, original) in sorted(self._claimed.items()):
                    failed = self._control.restore(index, original)
                    if failed:
                        problems += failed
                        continue
                    self.state.release(uuid, self.owner)
                self._claimed.clear()
            if self._gpus is not None:
                self._gpus.close()
                self._gpus, self._control = None, None
        return problems

    @property
    def changed_any(self) -> bool:
        """Whether this run saved (and so may have changed) any GPU."""
        return bool(self._claimed)


__all__ = [
    "SETTING_NAMES",
    "SettingRefused",
    "SettingsKeeper",
    "restore_left_changed",
    "settings_of",
]
