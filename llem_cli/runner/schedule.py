"""The experiments of a campaign in execution order, and the pauses between them.

The order is produced lazily (except ``shuffled``, which needs every pair), so ``llem plan
--json`` streams a huge plan; a key never depends on the order, so a resume finds its records.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llem_cli.campaign.model import Campaign

from llem_cli.campaign.expansion import Config


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
