"""Expanding a campaign into configurations and ordering them into experiments.

Expansion is linear in the number of configurations and the experiment order is
produced lazily, so a 100,000-configuration grid plans in well under two
seconds and ``llem plan --json`` can stream it. A configuration's ``config_id``
hashes only its backend and params, never its position, so shuffled or edited
campaigns keep their keys and resume correctly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llem_cli.campaign.model import Campaign

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Config:
    """One configuration: a backend and its params. ``origin`` is where it came from."""

    backend: str
    params: dict[str, Any]
    config_id: str
    origin: PathKey


@dataclass(frozen=True, slots=True)
class Experiment:
    """One run of a configuration in one cycle (1-based)."""

    config: Config
    cycle: int
    service: str

    @property
    def key(self) -> str:
        """``<config_id>-c<cycle>``: stable whatever the order."""
        return f"{self.config.config_id}-c{self.cycle}"

    def to_json(self) -> dict[str, Any]:
        """The object ``llem plan --json`` prints (DESIGN.md)."""
        return {
            "key": self.key,
            "config_id": self.config.config_id,
            "cycle": self.cycle,
            "backend": self.config.backend,
            "service": self.service,
            "params": self.config.params,
        }


def make_config_id(backend: str, params: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit hash of backend and params, independent of key order."""
    canonical = json.dumps(
        {"backend": backend, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def same_value(a: object, b: object) -> bool:
    """Equality as a user means it in a campaign: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def matches(selector: Mapping[str, Any], backend: str, params: Mapping[str, Any]) -> bool:
    """Whether a configuration matches every key of an ``exclude`` entry."""
    for name, wanted in selector.items():
        if name == "backend":
            if not same_value(backend, wanted):
                return False
        elif name not in params or not same_value(params[name], wanted):
            return False
    return True


@dataclass
class Expansion:
    """The configurations of a campaign and what was noticed while expanding it."""

    configs: list[Config]
    duplicates: list[tuple[PathKey, str]]
    exclude_hits: list[int]


def _grid_combos(campaign: Campaign) -> Iterator[tuple[str, dict[str, Any]]]:
    """The grid's cartesian product, as (backend, params), backend axis first."""
    grid = dict(campaign.grid or {})
    if not grid:
        return
    backends = grid.pop("backend", None)
    if backends is None:
        backends = list(campaign.backends)
    names = list(grid)
    for backend in backends:
        extra = campaign.per_backend.get(str(backend), {})
        extra_names = list(extra)
        for values in itertools.product(*grid.values()):
            params = dict(zip(names, values, strict=True))
            if not extra:
                yield str(backend), params
                continue
            for extra_values in itertools.product(*extra.values()):
                yield str(backend), {**params, **dict(zip(extra_names, extra_values, strict=True))}


def expand(campaign: Campaign) -> Expansion:
    """Grid product, per-backend axes, explicit experiments, minus ``exclude``."""
    seen: set[str] = set()
    configs: list[Config] = []
    duplicates: list[tuple[PathKey, str]] = []
    exclude = campaign.exclude
    exclude_hits = [0] * len(exclude)
    only_backend = next(iter(campaign.backends)) if len(campaign.backends) == 1 else None

    def add(backend: str, params: dict[str, Any], origin: PathKey) -> None:
        for index, selector in enumerate(exclude):
            if matches(selector, backend, params):
                exclude_hits[index] += 1
                return
        config_id = make_config_id(backend, params)
        if config_id in seen:
            duplicates.append((origin, config_id))
            return
        seen.add(config_id)
        configs.append(Config(backend, params, config_id, origin))

    for backend, params in _grid_combos(campaign):
        add(backend, params, ("grid",))
    for index, entry in enumerate(campaign.experiments):
        params = {k: v for k, v in entry.items() if k != "backend"}
        # None only with several backends, which check_campaign refuses before expanding
        backend_name = entry.get("backend", only_backend)
        add(str(backend_name), params, ("experiments", index))
    return Expansion(configs, duplicates, exclude_hits)


def order_experiments(configs: list[Config], campaign: Campaign) -> Iterator[Experiment]:
    """Experiments in execution order; lazy except for ``shuffled``, which needs all pairs.

    interleaved: every configuration once per cycle, cycle after cycle, so repeats
    of a configuration are spread over the whole run. grouped: backend by backend
    (one container up at a time), cycles interleaved within a backend. shuffled:
    a seeded, reproducible permutation of all (configuration, cycle) pairs.
    """
    execution = campaign.execution
    cycles = range(1, execution.cycles + 1)
    services = {name: campaign.service_of(name) for name in campaign.backends}
    if execution.order == "interleaved":
        for cycle in cycles:
            for config in configs:
                yield Experiment(config, cycle, services[config.backend])
    elif execution.order == "grouped":
        by_backend: dict[str, list[Config]] = {}
        for config in configs:
            by_backend.setdefault(config.backend, []).append(config)
        for backend, group in by_backend.items():
            for cycle in cycles:
                for config in group:
                    yield Experiment(config, cycle, services[backend])
    else:
        pairs = [(i, c) for c in cycles for i in range(len(configs))]
        random.Random(execution.seed).shuffle(pairs)
        for index, cycle in pairs:
            config = configs[index]
            yield Experiment(config, cycle, services[config.backend])


def pause(
    previous: Experiment | None, experiment: Experiment, campaign: Campaign
) -> tuple[float, str]:
    """Seconds to wait before ``experiment``, and the setting they come from (to say so).

    ``gap`` between experiments, or ``cycle_gap`` (if longer) when a new cycle starts. A new
    cycle starts when the cycle number changes (interleaved: between cycles; grouped: between
    cycles of a backend). Shuffled order has no cycle boundaries, so only ``gap`` applies there.
    """
    execution = campaign.execution
    if previous is None:
        return 0.0, "gap"
    new_cycle = execution.order != "shuffled" and previous.cycle != experiment.cycle
    if new_cycle and execution.cycle_gap >= execution.gap:
        return execution.cycle_gap, "cycle_gap"
    return execution.gap, "gap"


def pause_before(previous: Experiment | None, experiment: Experiment, campaign: Campaign) -> float:
    """Seconds to wait before ``experiment`` (see :func:`pause`)."""
    return pause(previous, experiment, campaign)[0]


def stream_json(experiments: Iterable[Experiment], write: Any) -> int:
    """Write the plan as a JSON list, one object at a time; return how many."""
    count = 0
    write("[")
    for experiment in experiments:
        write(",\n " if count else "\n ")
        write(json.dumps(experiment.to_json(), ensure_ascii=False))
        count += 1
    write("\n]\n" if count else "]\n")
    return count
