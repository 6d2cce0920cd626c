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
from llem_cli.campaign.servers import server_id


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
        """The object ``llem plan --json`` prints (docs/design.md)."""
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

    interleaved: every configuration once per cycle, cycle after cycle, so repeats of a
    configuration are spread over the whole run (slow drift, such as a warming room, hits
    every configuration alike).

    grouped: all cycles of a configuration back to back, configurations backend by backend
    (backends in the order their first configuration appears, each backend's configurations
    in expansion order), so each backend's container is up for one stretch of the run and a
    configuration's repeats share the same conditions; a serving backend's configurations go
    server configuration by server configuration (in order of first appearance), so each
    server starts once.

    shuffled: a seeded, reproducible permutation of all (configuration, cycle) pairs.
    """
    execution = campaign.execution
    cycles = range(1, execution.cycles + 1)
    services = {name: campaign.service_of(name) for name in campaign.backends}
    if execution.order == "interleaved":
        in_cycle = _settings_together(configs, campaign)
        for cycle in cycles:
            for config in in_cycle:
                yield Experiment(config, cycle, services[config.backend])
    elif execution.order == "grouped":
        by_backend: dict[str, list[Config]] = {}  # dicts keep first-appearance order
        for config in configs:
            by_backend.setdefault(config.backend, []).append(config)
        for backend, group in by_backend.items():
            by_server: dict[str | None, list[Config]] = {}  # a serving backend's servers
            for config in group:
                by_server.setdefault(server_id(campaign, config), []).append(config)
            for server_group in by_server.values():
                for config in _settings_together(server_group, campaign):
                    for cycle in cycles:
                        yield Experiment(config, cycle, services[backend])
    else:
        pairs = [(i, c) for c in cycles for i in range(len(configs))]
        random.Random(execution.seed).shuffle(pairs)
        for index, cycle in pairs:
            config = configs[index]
            yield Experiment(config, cycle, services[config.backend])


def _settings_together(configs: list[Config], campaign: Campaign) -> list[Config]:
    """The configurations with equal ``gpu_settings`` next to each other (stable, in order of
    first appearance), so the GPUs' settings change as rarely as the order allows."""
    if campaign.gpu_settings is None:
        return configs
    names = list(campaign.gpu_settings.axes())
    groups: dict[str, list[Config]] = {}
    for config in configs:
        key = json.dumps([config.params.get(n) for n in names])
        groups.setdefault(key, []).append(config)
    return [config for group in groups.values() for config in group]


def pause(
    previous: Experiment | None, experiment: Experiment, campaign: Campaign
) -> tuple[float, str]:
    """Seconds to wait before ``experiment``, and the setting they come from (to say so).

    ``gap`` between experiments, or ``cycle_gap`` (if longer) before a new cycle, which is
    what ``cycle_gap`` promises: a pause before a cycle starts again. What "a new cycle" is
    depends on the order:

    - interleaved: the cycle number changes, i.e. between two passes over the configurations.
    - grouped: a configuration's cycles run back to back, so the cycle number changes between
      almost every pair and says nothing about repetition. A cycle starts again where the
      same configuration repeats: ``cycle_gap`` applies between two experiments of the same
      configuration, and ``gap`` between configurations (a different configuration is a new
      measurement, not a repeat). 8 configurations x 3 cycles take 16 cycle gaps and 7 gaps
      grouped, 2 cycle gaps and 21 gaps interleaved.
    - shuffled: there is no cycle boundary to honour, so only ``gap`` applies.

    ``previous`` is the experiment that last ran (on a resume, or after skipped and pruned
    ones, possibly not the one just before in the plan); the rule compares the two only.
    """
    execution = campaign.execution
    if previous is None:
        return 0.0, "gap"
    if execution.order == "grouped":
        new_cycle = (
            previous.config.config_id == experiment.config.config_id
            and previous.cycle != experiment.cycle
        )
    else:
        new_cycle = execution.order == "interleaved" and previous.cycle != experiment.cycle
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
