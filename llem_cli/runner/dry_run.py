"""``llem run --dry-run``: the campaign loop itself, over a container layer that prints.

Not a copy of the loop: :class:`~llem_cli.runner.loop.CampaignLoop` runs as it runs for real,
over a :class:`~llem_cli.docker.manager.ContainerManager` whose runner prints each docker argv
(redacted) instead of running it, a journal that writes nothing, no host measurement, and a
sleep that says how long it would wait. So the commands shown are the commands a run sends on
its ok path, in the loop's own order (probes when due, a container removed after its backend's
last experiment), and nothing is started, written or locked.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

from llem_cli.campaign.load import LoadedCampaign
from llem_cli.docker.compose import ComposeCLI, discover_compose
from llem_cli.docker.manager import ContainerManager
from llem_cli.docker.override import override_name, render_override
from llem_cli.docker.proc import DryRunRunner
from llem_cli.errors import LlemError
from llem_cli.runner.lane_plan import LanePlan, LaneRequest, host_gpus, lanes_wanted, resolve_lanes
from llem_cli.runner.lane_run import lane_pins, lane_project
from llem_cli.runner.lanes import Dispatcher, HostGpu
from llem_cli.runner.loop import CampaignLoop, LoopContext
from llem_cli.runner.measuring import NoMeasuring
from llem_cli.runner.schedule import Experiment, order_experiments
from llem_cli.runs.journal import make_event
from llem_cli.runs.layout import RunDir, new_run_id
from llem_cli.runs.state import RunState


class UnwrittenJournal:
    """Builds the events a run would journal, and writes none of them."""

    def append(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """The event as :meth:`llem_cli.runs.journal.Journal.append` would write it."""
        return make_event(kind, **fields)


def compose_for_dry_run() -> ComposeCLI:
    """The Compose that would run (asking for its version starts nothing); assumed v2 if none."""
    try:
        return discover_compose()
    except LlemError:
        return ComposeCLI.assumed()


def show_event(echo: Callable[[str], None]) -> Callable[[dict[str, Any]], None]:
    """The dry run's display: a comment line before each experiment and for each wait."""

    def show(event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "experiment_started":
            echo(f"# experiment {event['key']} ({event['backend']})")
        elif kind == "waiting":
            echo(f"# wait {event['seconds']:g}s ({event['why']})")
        elif kind == "server_start":
            argv = shlex.join(event["argv"])
            echo(f"# server {event['server_id']} of {event['service']}: {argv}")
            echo("#   (the container's main process: up recreates the container with it)")
        elif kind == "server" and not event.get("waited_s"):
            echo("# wait until ready (exec'd until it exits 0, at most ready_timeout)")

    return show


def dry_run_campaign(
    loaded: LoadedCampaign,
    results_dir: Path | None,
    stream: IO[str] | None = None,
    *,
    lanes: LaneRequest | None = None,
) -> int:
    """Print the override file and the docker commands of the ok path, in order; touch nothing."""
    campaign = loaded.campaign

    def echo(text: str) -> None:
        click.echo(text, file=stream)

    run_id = new_run_id()
    run = RunDir(loaded.results_dir(results_dir) / campaign.name / run_id)
    services = campaign.keepalive_services()
    echo(f"# dry run: nothing is started or written; run directory would be {run.root}")
    experiments = list(order_experiments(loaded.configs, campaign))
    compose = compose_for_dry_run()
    request = lanes or LaneRequest()
    if lanes_wanted(loaded, request) != 1 or request.gpus is not None:
        plan = resolve_lanes(
            loaded, experiments, request, compose, gpus=_dry_run_gpus(loaded, request), dry_run=True
        )
        if plan.lanes is not None:
            _dry_run_lanes(loaded, plan, run, run_id, experiments, services, compose, echo, stream)
            return 0
    echo("# compose.override.yaml:")
    echo(render_override(run_id, run.root, services).rstrip("\n"))
    echo("# commands, in order:")
    manager = ContainerManager(
        campaign.project_name,
        loaded.compose_paths(),
        run_id=run_id,
        run_dir=run.root,
        services=services,
        runner=DryRunRunner(stream=stream),
        compose=compose,
    )
    context = LoopContext(
        campaign=campaign,
        run_id=run_id,
        experiments=experiments,
        replayed=RunState(),
        prepare_dir=run.experiment,  # named, never created
    )
    loop = CampaignLoop(
        context,
        containers=manager,
        measuring=NoMeasuring(),
        journal=UnwrittenJournal(),
        emit=show_event(echo),
        sleep=lambda _seconds: None,  # the wait is shown, not waited
    )
    loop.run_all()
    manager.teardown(force=True)
    return 0


def _dry_run_gpus(loaded: LoadedCampaign, request: LaneRequest) -> list[HostGpu]:
    """Host NVML's GPUs (reading them changes nothing); without any, placeholders.

    A dry run on a laptop still shows the lanes: as many placeholder GPUs as the request
    needs (``--gpus`` UUIDs as given; ``auto`` shows two lanes).
    """
    found = host_gpus()
    if found:
        return found
    if request.gpus is not None:
        return [
            HostGpu(int(e), f"<uuid of GPU {e}>") if e.isdigit() else HostGpu(None, e)
            for e in request.gpus
        ]
    setting = lanes_wanted(loaded, request)
    lanes = 2 if setting == "auto" else setting
    counts = [b.gpu_count or 1 for b in loaded.campaign.backends.values()]
    total = lanes * max(counts, default=1)
    return [HostGpu(i, f"<uuid of GPU {i}>") for i in range(total)]


def _dry_run_lanes(
    loaded: LoadedCampaign,
    plan: LanePlan,
    run: RunDir,
    run_id: str,
    experiments: list[Experiment],
    services: dict[str, bool],
    compose: ComposeCLI,
    echo: Callable[[str], None],
    stream: IO[str] | None,
) -> None:
    """Each lane's override and commands; experiments dealt to the lanes in turn.

    Lanes run at once, so a real run's interleaving depends on each experiment's length;
    dealing them in turn is what equal-length experiments give, and shows each lane's
    pinned commands one lane after the other.
    """
    assert plan.lanes is not None
    campaign = loaded.campaign
    echo(f"# {len(plan.lanes)} lane(s), at once: " + "; ".join(x.describe() for x in plan.lanes))
    for note in plan.notes:
        echo(f"# {note}")
    for lane in plan.lanes:
        pins = lane_pins(campaign, lane, list(services))
        project = lane_project(campaign.project_name, lane.number)
        name = override_name(lane.number)
        echo(f"# {lane.describe()}: compose project {project}, {name}:")
        echo(
            render_override(run_id, run.root, services, pin=pins, facts=plan.facts or None).rstrip(
                "\n"
            )
        )
    dealt: dict[int, list[Experiment]] = {lane.number: [] for lane in plan.lanes}
    source = Dispatcher(experiments, plan.lanes)
    while True:
        progress = False
        for lane in plan.lanes:
            taken = source.take(lane.number, wait=False)
            if taken is not None:
                dealt[lane.number].append(taken)
                source.settle(taken)
                progress = True
        if not progress:
            break
    for lane in plan.lanes:
        echo(f"# commands of {lane.describe()}, in order:")
        manager = ContainerManager(
            lane_project(campaign.project_name, lane.number),
            loaded.compose_paths(),
            run_id=run_id,
            run_dir=run.root,
            services=services,
            runner=DryRunRunner(stream=stream),
            compose=compose,
            pins=lane_pins(campaign, lane, list(services)),
            facts=plan.facts or None,
        )
        context = LoopContext(
            campaign=campaign,
            run_id=run_id,
            experiments=dealt[lane.number],
            replayed=RunState(),
            prepare_dir=run.experiment,
        )
        loop = CampaignLoop(
            context,
            containers=manager,
            measuring=NoMeasuring(),
            journal=UnwrittenJournal(),
            emit=show_event(echo),
            sleep=lambda _seconds: None,
            lane=lane,
        )
        loop.run_all()
        manager.teardown(force=True)


__all__ = ["UnwrittenJournal", "compose_for_dry_run", "dry_run_campaign"]
