"""``llem run --dry-run``: the campaign loop itself, over a container layer that prints.

Not a copy of the loop: :class:`~llem_cli.runner.loop.CampaignLoop` runs as it runs for real,
over a :class:`~llem_cli.docker.manager.ContainerManager` whose runner prints each docker argv
(redacted) instead of running it, a journal that writes nothing, no host measurement, and a
sleep that says how long it would wait. So the commands shown are the commands a run sends on
its ok path, in the loop's own order (probes when due, a container removed after its backend's
last experiment), and nothing is started, written or locked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

from llem_cli.campaign.load import LoadedCampaign
from llem_cli.docker.compose import ComposeCLI, discover_compose
from llem_cli.docker.manager import ContainerManager
from llem_cli.docker.override import render_override
from llem_cli.docker.proc import DryRunRunner
from llem_cli.errors import LlemError
from llem_cli.runner.loop import CampaignLoop, LoopContext
from llem_cli.runner.measuring import NoMeasuring
from llem_cli.runner.schedule import order_experiments
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

    return show


def dry_run_campaign(
    loaded: LoadedCampaign, results_dir: Path | None, stream: IO[str] | None = None
) -> int:
    """Print the override file and the docker commands of the ok path, in order; touch nothing."""
    campaign = loaded.campaign

    def echo(text: str) -> None:
        click.echo(text, file=stream)

    run_id = new_run_id()
    run = RunDir(loaded.results_dir(results_dir) / campaign.name / run_id)
    services = {campaign.service_of(n): b.keepalive for n, b in campaign.backends.items()}
    echo(f"# dry run: nothing is started or written; run directory would be {run.root}")
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
        compose=compose_for_dry_run(),
    )
    context = LoopContext(
        campaign=campaign,
        run_id=run_id,
        experiments=list(order_experiments(loaded.configs, campaign)),
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


__all__ = ["UnwrittenJournal", "compose_for_dry_run", "dry_run_campaign"]
