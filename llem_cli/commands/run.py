"""``llem run``: execute a campaign (or print what it would do with --dry-run)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llem_cli.campaign.load import LoadedCampaign, load_campaign
from llem_cli.docker.compose import ComposeCLI, discover_compose
from llem_cli.docker.manager import ContainerManager
from llem_cli.docker.override import render_override
from llem_cli.docker.proc import DryRunRunner
from llem_cli.errors import LlemError
from llem_cli.output import Output
from llem_cli.runner.experiment_command import experiment_argv, experiment_environment
from llem_cli.runner.reporter import JsonReporter, PlainReporter, Reporter, RichReporter
from llem_cli.runner.schedule import Experiment, order_experiments, pause_before
from llem_cli.runner.session import RunRequest, execute
from llem_cli.runs.layout import new_run_id


def run_campaign(
    file: Path,
    *,
    dry_run: bool,
    resume: bool,
    resume_dir: Path | None,
    results_dir: Path | None,
    progress: bool,
    as_json: bool,
    out: Output,
) -> int:
    """Run the campaign in ``file``; return the exit code."""
    loaded = load_campaign(file)
    for warning in loaded.warnings:
        click.echo(warning.render(), err=True)
    if dry_run:
        return dry_run_campaign(loaded, results_dir)
    reporter = choose_reporter(out, progress=progress, as_json=as_json)
    request = RunRequest(
        resume=resume or resume_dir is not None, resume_dir=resume_dir, results_dir=results_dir
    )
    try:
        return execute(loaded, request, reporter)
    finally:
        reporter.close()


def choose_reporter(out: Output, *, progress: bool, as_json: bool) -> Reporter:
    """JSON lines, a live display on a terminal, or plain lines (cron, logs, pipes)."""
    if as_json:
        return JsonReporter()
    if progress and sys.stdout.isatty() and not out.quiet:
        return RichReporter(out.console())
    return PlainReporter(verbose=out.verbosity > 0 and not out.quiet, quiet=out.quiet)


def compose_for_dry_run() -> ComposeCLI:
    """The Compose that would run (asking for its version starts nothing); assumed v2 if none."""
    try:
        return discover_compose()
    except LlemError:
        return ComposeCLI.assumed()


def dry_run_campaign(loaded: LoadedCampaign, results_dir: Path | None) -> int:
    """Print the override file and the docker commands of the ok path, in order; touch nothing."""
    campaign = loaded.campaign
    run_id = new_run_id()
    run_root = loaded.results_dir(results_dir) / campaign.name / run_id
    services = {campaign.service_of(n): b.keepalive for n, b in campaign.backends.items()}
    click.echo(f"# dry run: nothing is started or written; run directory would be {run_root}")
    click.echo("# compose.override.yaml:")
    click.echo(render_override(run_id, run_root, services).rstrip("\n"))
    click.echo("# commands, in order:")
    experiments = list(order_experiments(loaded.configs, campaign))
    remaining: dict[str, int] = {}
    for experiment in experiments:
        remaining[experiment.service] = remaining.get(experiment.service, 0) + 1
    runner = DryRunRunner()
    manager = ContainerManager(
        campaign.project_name,
        loaded.compose_paths(),
        run_id=run_id,
        run_dir=run_root,
        services=services,
        runner=runner,
        compose=compose_for_dry_run(),
    )
    started: set[str] = set()
    previous: Experiment | None = None
    every = campaign.health.every
    probe = campaign.health.probe
    for index, experiment in enumerate(experiments):
        service = experiment.service
        pause = pause_before(previous, experiment, campaign)
        previous = experiment
        if pause:
            click.echo(f"# wait {pause:g}s")
        if service not in started:
            manager.start(service)
            started.add(service)
        if every > 0 and index % every == 0:
            manager.probe(service, None if probe == "nvidia-smi" else list(probe))
        click.echo(f"# experiment {experiment.key} ({experiment.config.backend})")
        manager.exec(
            service,
            experiment_argv(campaign, run_id, experiment),
            env=experiment_environment(campaign, run_id, experiment),
            timeout_s=campaign.execution.timeout,
        )
        remaining[service] -= 1
        if remaining[service] == 0:
            manager.stop(service)
            started.discard(service)
    manager.teardown(force=True)
    return 0
