"""Deciding a run's lanes before anything is written: GPUs, lane count, what Compose allows.

``llem run --lanes N|auto --gpus LIST`` (or ``execution.lanes``) asks for lanes; this module
asks host NVML which GPUs exist (UUIDs), keeps those ``--gpus`` allows, splits them into lanes
(:func:`llem_cli.runner.lanes.plan_lanes`) and reads the user's compose services (``docker
compose config``, no GPU needed) to know what the per-lane override must reset. Every
impossible request is one line and exit 2 or 3 before the run directory exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llem_cli.campaign.load import LoadedCampaign
from llem_cli.docker.compose import ComposeCLI
from llem_cli.docker.proc import SubprocessRunner
from llem_cli.docker.service_facts import ServiceFacts, lane_limits, read_service_facts
from llem_cli.errors import LlemError
from llem_cli.runner.lanes import HostGpu, Lane, LaneSetting, plan_lanes, select_gpus
from llem_cli.runner.schedule import Experiment


@dataclass(frozen=True)
class LaneRequest:
    """What the command line asked: ``--lanes`` (None: the campaign's) and ``--gpus``."""

    lanes: LaneSetting | None = None
    gpus: tuple[str, ...] | None = None


@dataclass
class LanePlan:
    """The lanes of a run (None: no lanes, containers unpinned, as before lanes existed)."""

    lanes: list[Lane] | None
    facts: dict[str, ServiceFacts] = field(default_factory=dict)
    one_lane_services: frozenset[str] = frozenset()
    notes: list[str] = field(default_factory=list)

    def journal_fields(self, project: str) -> dict[str, Any]:
        """The ``lanes`` journal event: each lane's GPUs, UUIDs and compose project."""
        from llem_cli.runner.lane_run import lane_project

        lanes = self.lanes or []
        return {
            "lanes": [
                {
                    "lane": lane.number,
                    "gpus": [g.label() for g in lane.gpus],
                    "uuids": [g.uuid for g in lane.gpus],
                    "project": lane_project(project, lane.number),
                }
                for lane in lanes
            ],
            "gpus_per_lane": len(lanes[0].gpus) if lanes else 0,
        }


def lanes_wanted(loaded: LoadedCampaign, request: LaneRequest) -> LaneSetting:
    """``--lanes`` if given, else ``execution.lanes``."""
    return request.lanes if request.lanes is not None else loaded.campaign.execution.lanes


def host_gpus() -> list[HostGpu]:
    """Every GPU host NVML reports, with its UUID (empty: no driver, no GPU)."""
    from llem_cli.telemetry import describe_gpus

    report = describe_gpus()
    return [HostGpu(g.index, g.uuid) for g in report.gpus if g.uuid]


def resolve_lanes(
    loaded: LoadedCampaign,
    experiments: Sequence[Experiment],
    request: LaneRequest,
    compose: ComposeCLI,
    *,
    gpus: Sequence[HostGpu] | None = None,
    dry_run: bool = False,
) -> LanePlan:
    """The run's lanes, or a plan without lanes when one unpinned lane was asked.

    ``gpus`` stands in for host NVML (the dry run's placeholders).
    """
    campaign = loaded.campaign
    setting = lanes_wanted(loaded, request)
    if setting == 1 and request.gpus is None:
        return LanePlan(None)
    host = list(gpus) if gpus is not None else host_gpus()
    allowed = select_gpus(host, request.gpus)
    backends = list(dict.fromkeys(e.config.backend for e in experiments))
    lanes = plan_lanes(campaign, backends, allowed, setting, gpus_given=request.gpus is not None)
    services = list(dict.fromkeys(campaign.service_of(b) for b in backends))
    try:
        facts = read_service_facts(
            SubprocessRunner(),
            compose,
            loaded.compose_paths(),
            campaign.project_name,
            services=services,
        )
    except LlemError:
        if not dry_run:
            raise
        facts = {}  # the dry run shows the pins without what the user's file would need reset
    facts = {name: fact for name, fact in facts.items() if name in services}
    notes: list[str] = []
    one_lane: set[str] = set()
    if len(lanes) > 1:
        for service, what in lane_limits(facts, compose).items():
            one_lane.add(service)
            notes.append(
                f"service {service!r} has {what}, which Compose {compose.version_text} cannot "
                f"change per lane (2.24.4 or later can): it runs in lane {lanes[0].number} only"
            )
    return LanePlan(lanes, facts, frozenset(one_lane), notes)


__all__ = ["LanePlan", "LaneRequest", "host_gpus", "lanes_wanted", "resolve_lanes"]
