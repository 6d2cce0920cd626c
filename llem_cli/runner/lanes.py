"""Lanes: which GPUs each lane owns, and which experiment a free lane runs next.

A lane is one worker with its own GPUs (a fixed slice of the GPUs llem may use) and its own
containers, pinned to those GPUs by UUID. Lanes take experiments from one shared queue, the
:class:`Dispatcher`, so the campaign's order holds across lanes and a retired lane's pending
experiments simply stay in the queue for the others. Everything here is pure (no Docker, no
NVML, no threads started): :func:`plan_lanes` turns the GPUs and the campaign into lanes,
:class:`Dispatcher` hands out experiments; ``runner/lane_run.py`` runs the lanes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from llem_cli.errors import EnvironmentProblem, UsageProblem

if TYPE_CHECKING:
    from llem_cli.campaign.model import Backend, Campaign
    from llem_cli.runner.schedule import Experiment

LaneSetting = int | Literal["auto"]


@dataclass(frozen=True, slots=True)
class HostGpu:
    """One GPU llem may use: its host NVML index (None: unknown, e.g. a MIG device) and UUID."""

    index: int | None
    uuid: str

    @property
    def mig(self) -> bool:
        """A MIG device: NVML's energy and power are the whole GPU's, not this slice's."""
        return self.uuid.startswith("MIG-")

    def label(self) -> str:
        """``0`` (its host index) or the UUID when the index is unknown."""
        return str(self.index) if self.index is not None else self.uuid


@dataclass(frozen=True, slots=True)
class Lane:
    """A lane: its number (``LLEM_LANE``) and the GPUs it owns, in order."""

    number: int
    gpus: tuple[HostGpu, ...]

    def gpus_for(self, backend: Backend) -> tuple[HostGpu, ...]:
        """The lane's GPUs one experiment of ``backend`` uses.

        A pinned list: exactly those host GPUs (they are in this lane, see :func:`eligible`);
        a count k: the lane's first k; no ``gpus``: all of the lane's.
        """
        pinned = backend.pinned_gpus
        if pinned is not None:
            return tuple(g for g in self.gpus if g.index in pinned)
        count = backend.gpu_count
        return self.gpus if count is None else self.gpus[:count]

    def holds(self, backend: Backend) -> bool:
        """Whether ``backend``'s experiments can run here (a pinned list must be in the lane)."""
        pinned = backend.pinned_gpus
        if pinned is None:
            return True
        mine = {g.index for g in self.gpus}
        return all(i in mine for i in pinned)

    def describe(self) -> str:
        """``lane 1 (GPU 2, GPU 3)``."""
        return f"lane {self.number} ({', '.join('GPU ' + g.label() for g in self.gpus)})"


def parse_gpus_option(text: str) -> list[str]:
    """``--gpus 0,1`` / ``--gpus GPU-ab..,GPU-cd..``: the entries, stripped, duplicates refused."""
    entries = [e.strip() for e in text.split(",")]
    if not text.strip() or any(not e for e in entries):
        raise UsageProblem(
            f"--gpus {text!r}: expected a comma-separated list of GPU indexes or UUIDs",
            hint="e.g. --gpus 0,1 or --gpus GPU-5f1c...,GPU-9a2e...",
        )
    seen: set[str] = set()
    for entry in entries:
        if entry in seen:
            raise UsageProblem(f"--gpus {text!r}: GPU {entry} is listed twice")
        seen.add(entry)
    return entries


def select_gpus(host: Sequence[HostGpu], wanted: Sequence[str] | None) -> list[HostGpu]:
    """The GPUs llem may use: every host GPU, or the ``--gpus`` entries (indexes or UUIDs).

    An index NVML does not know is a usage error (exit 2); a UUID is matched against the
    host's, and one that NVML does not list is accepted only as a MIG device (NVML lists whole
    GPUs), whose energy then stays null.
    """
    if wanted is None:
        return list(host)
    by_index = {g.index: g for g in host if g.index is not None}
    by_uuid = {g.uuid: g for g in host}
    chosen: list[HostGpu] = []
    for entry in wanted:
        if entry.isdigit():
            gpu = by_index.get(int(entry))
            if gpu is None:
                known = ", ".join(str(i) for i in sorted(by_index)) or "none"
                if not host:
                    raise EnvironmentProblem(
                        f"--gpus {entry}: no host GPU is visible to NVML, so GPU indexes "
                        "cannot be mapped to UUIDs",
                        hint="check the NVIDIA driver with 'llem doctor', or give UUIDs",
                    )
                raise UsageProblem(
                    f"--gpus {entry}: NVML knows no GPU with that index (host GPUs: {known})",
                    hint="'llem doctor' lists the host GPUs",
                )
        else:
            gpu = by_uuid.get(entry)
            if gpu is None:
                if not entry.startswith("MIG-"):
                    known = ", ".join(by_uuid) or "none"
                    raise UsageProblem(
                        f"--gpus {entry}: NVML knows no GPU with that UUID (host GPUs: {known})",
                        hint="'llem doctor' or 'nvidia-smi -L' lists them",
                    )
                gpu = HostGpu(None, entry)
        if gpu in chosen:
            raise UsageProblem(f"--gpus: GPU {entry} is listed twice (as index and UUID)")
        chosen.append(gpu)
    return chosen


def gpus_per_lane(campaign: Campaign, backends: Iterable[str], lanes: LaneSetting) -> int | None:
    """GPUs each lane owns: the largest ``gpus`` of the backends used (a count, or a pinned
    list's length); 1 where none says, with more than one lane. None: one lane of every GPU."""
    sizes = [campaign.backends[b].gpu_count for b in backends]
    given = [s for s in sizes if s is not None]
    if lanes == 1 and not given:
        return None
    return max(given, default=1)


def plan_lanes(
    campaign: Campaign,
    backends: Iterable[str],
    gpus: Sequence[HostGpu],
    lanes: LaneSetting,
    *,
    gpus_given: bool = False,
) -> list[Lane]:
    """Split the GPUs llem may use into lanes (each a fixed, disjoint slice, in order).

    One clear line for each impossible request: no GPU visible with lanes (exit 3), a backend
    asking more GPUs than llem may use, more lanes than the GPUs allow, a pinned list that no
    lane holds (exit 2).
    """
    used = list(dict.fromkeys(backends))
    where = "--gpus" if gpus_given else "the host"
    if not gpus:
        raise EnvironmentProblem(
            f"lanes: {lanes} needs host GPUs, but NVML reports none",
            hint="check the driver with 'llem doctor'; without lanes (lanes: 1, no --gpus) "
            "llem runs unpinned",
        )
    size = gpus_per_lane(campaign, used, lanes)
    if size is None:
        return [Lane(0, tuple(gpus))]
    for name in used:
        count = campaign.backends[name].gpu_count
        if count is not None and count > len(gpus):
            raise UsageProblem(
                f"backends.{name}.gpus: {count} GPUs per experiment, but llem may use "
                f"{len(gpus)} ({where}: {_labels(gpus)})",
                hint="lower gpus, or allow more GPUs with --gpus",
            )
    possible = len(gpus) // size
    count = possible if lanes == "auto" else lanes
    if count > possible:
        raise UsageProblem(
            f"lanes: {count} lanes of {size} GPU(s) need {count * size} GPUs, but llem may use "
            f"{len(gpus)} ({where}: {_labels(gpus)})",
            hint=f"use --lanes {possible} (or auto), or fewer GPUs per experiment",
        )
    planned = [Lane(n, tuple(gpus[n * size : (n + 1) * size])) for n in range(count)]
    for name in used:
        backend = campaign.backends[name]
        if backend.pinned_gpus is not None and not any(lane.holds(backend) for lane in planned):
            slices = "; ".join(lane.describe() for lane in planned)
            raise UsageProblem(
                f"backends.{name}.gpus: {backend.pinned_gpus} is not within one lane ({slices})",
                hint="pin GPUs of one lane, or give a count (gpus: k) and let llem choose",
            )
    return planned


def lane_gpu_indices(lanes: Iterable[Lane]) -> list[int]:
    """The host indexes of every GPU the lanes own (MIG devices, with no index, left out)."""
    return sorted({g.index for lane in lanes for g in lane.gpus if g.index is not None})


def service_gpus(lane: Lane, campaign: Campaign, service: str) -> tuple[HostGpu, ...]:
    """The lane's GPUs a service's container is pinned to: what its backends use together.

    Backends sharing a service share its container, so the container gets the largest set
    they ask (a pinned list wins: it names its GPUs).
    """
    backends = [b for name, b in campaign.backends.items() if campaign.service_of(name) == service]
    for backend in backends:
        if backend.pinned_gpus is not None:
            return lane.gpus_for(backend)
    counts = [b.gpu_count for b in backends]
    if not backends or any(c is None for c in counts):
        return lane.gpus
    return lane.gpus[: max(c for c in counts if c is not None)]


def _labels(gpus: Sequence[HostGpu]) -> str:
    return ", ".join(g.label() for g in gpus)


@dataclass
class _Queue:
    """The dispatcher's state, guarded by its condition."""

    pending: list[tuple[int, Experiment]]  # (plan position, experiment), in plan order
    in_flight: dict[str, tuple[int, int, Experiment]] = field(default_factory=dict)  # key->lane
    retired: set[int] = field(default_factory=set)
    used_lanes: dict[str, set[int]] = field(default_factory=dict)  # config_id -> lanes it ran in
    per_service: Counter[str] = field(default_factory=Counter)
    taken: int = 0


class Dispatcher:
    """The shared queue of pending experiments; free lanes take from it in plan order.

    A lane takes the first experiment it can run among the next ``window`` (the number of
    lanes) that has not yet run in this lane, else the first it can run: the campaign's order
    holds to within one experiment per lane, and a configuration's cycles spread over
    different GPUs where possible (GPU-to-GPU variance then shows in the results). An
    experiment a lane could not run (its lane was retired before the exec) goes back to its
    place. Thread-safe; ``take`` blocks while another lane's experiment may still come back.
    """

    def __init__(
        self,
        experiments: Iterable[Experiment],
        lanes: Sequence[Lane],
        *,
        can_run: Callable[[Experiment, Lane], bool] | None = None,
        history: dict[str, set[int]] | None = None,
    ) -> None:
        items = list(enumerate(experiments))
        self._lanes = {lane.number: lane for lane in lanes}
        self._can_run = can_run or (lambda e, lane: True)
        self._window = max(1, len(lanes))
        self._q = _Queue(
            pending=items,
            used_lanes={k: set(v) for k, v in (history or {}).items()},
            per_service=Counter(e.service for _, e in items),
        )
        self._cond = threading.Condition()
        self._stopped = False

    # ---- for the lanes --------------------------------------------------------------------------

    def take(self, lane: int, *, wait: bool = True) -> Experiment | None:
        """The next experiment for ``lane``; None when nothing is left it could ever run."""
        with self._cond:
            while True:
                if self._stopped or lane in self._q.retired:
                    return None
                chosen = self._choose(lane)
                if chosen is not None:
                    return chosen
                if not wait or not self._may_come_back(lane):
                    return None
                self._cond.wait(0.5)

    def settle(self, experiment: Experiment) -> None:
        """``experiment`` has its final record (or an interrupted one): it leaves the queue."""
        with self._cond:
            self._q.in_flight.pop(experiment.key, None)
            self._cond.notify_all()

    def give_back(self, experiment: Experiment) -> None:
        """``experiment`` was not run (its lane retired first): back to its place in the queue."""
        with self._cond:
            entry = self._q.in_flight.pop(experiment.key, None)
            if entry is None:
                return
            position, _, _ = entry
            pending = self._q.pending
            at = next((i for i, (p, _) in enumerate(pending) if p > position), len(pending))
            pending.insert(at, (position, experiment))
            self._q.per_service[experiment.service] += 1
            self._q.taken -= 1
            self._cond.notify_all()

    def retire(self, lane: int) -> None:
        """``lane`` takes nothing more (its restart budget is spent, its GPU lost)."""
        with self._cond:
            self._q.retired.add(lane)
            self._cond.notify_all()

    def stop(self) -> None:
        """No lane takes anything more (the run is stopping)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def work_left(
        self,
        service: str,
        lane: int,
        *,
        besides: Experiment | None = None,
        runs: Callable[[Experiment], bool] | None = None,
    ) -> bool:
        """Whether a pending experiment this lane could run will still use ``service``.

        ``besides`` (the experiment being decided about) is not counted: it was taken already;
        ``runs`` says whether an experiment will need its container at all (a skipped or
        pruned one is recorded without it).
        """
        with self._cond:
            if self._q.per_service[service] <= 0:
                return False
            target = self._lanes.get(lane)
            return any(
                e.service == service
                and (besides is None or e.key != besides.key)
                and (target is None or self._can_run(e, target))
                and (runs is None or runs(e))
                for _, e in self._q.pending
            )

    # ---- for the session ------------------------------------------------------------------------

    @property
    def taken(self) -> int:
        """Experiments handed out and not given back (the display's index)."""
        with self._cond:
            return self._q.taken

    def pending(self) -> list[Experiment]:
        """What no lane has taken yet, in plan order."""
        with self._cond:
            return [e for _, e in self._q.pending]

    def retired(self) -> set[int]:
        """The lanes retired so far."""
        with self._cond:
            return set(self._q.retired)

    # ---- internals (called with the condition held) ---------------------------------------------

    def _choose(self, lane_no: int) -> Experiment | None:
        lane = self._lanes.get(lane_no)
        candidates: list[int] = []
        for i, (_, experiment) in enumerate(self._q.pending):
            if lane is None or self._can_run(experiment, lane):
                candidates.append(i)
                if len(candidates) >= self._window:
                    break
        if not candidates:
            return None
        pick = candidates[0]
        for i in candidates:
            config_id = self._q.pending[i][1].config.config_id
            if lane_no not in self._q.used_lanes.get(config_id, set()):
                pick = i
                break
        position, experiment = self._q.pending.pop(pick)
        self._q.in_flight[experiment.key] = (position, lane_no, experiment)
        self._q.used_lanes.setdefault(experiment.config.config_id, set()).add(lane_no)
        self._q.per_service[experiment.service] -= 1
        self._q.taken += 1
        return experiment

    def _may_come_back(self, lane_no: int) -> bool:
        """Whether an experiment in another lane could return to the queue for this lane."""
        lane = self._lanes.get(lane_no)
        return any(
            other != lane_no and (lane is None or self._can_run(e, lane))
            for _, other, e in self._q.in_flight.values()
        )


__all__ = [
    "Dispatcher",
    "HostGpu",
    "Lane",
    "LaneSetting",
    "gpus_per_lane",
    "lane_gpu_indices",
    "parse_gpus_option",
    "plan_lanes",
    "select_gpus",
    "service_gpus",
]
