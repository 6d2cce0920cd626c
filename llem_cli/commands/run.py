"""``llem run``: execute a campaign (or print what it would do with --dry-run)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llem_cli.campaign.load import load_campaign
from llem_cli.errors import EXIT_OK, UsageProblem
from llem_cli.output import Output
from llem_cli.runner.dry_run import dry_run_campaign
from llem_cli.runner.gpu_settings_run import restore_left_changed
from llem_cli.runner.lane_plan import LaneRequest
from llem_cli.runner.lanes import LaneSetting, parse_gpus_option
from llem_cli.runner.reporter import JsonReporter, PlainReporter, Reporter, RichReporter
from llem_cli.runner.schedule import order_experiments
from llem_cli.runner.session import RunRequest, execute
from llem_cli.runner.shard_task import open_shard


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
    lanes: str | None = None,
    gpus: str | None = None,
    shard: int | None = None,
) -> int:
    """Run the campaign in ``file``; return the exit code."""
    lane_request = LaneRequest(
        lanes=parse_lanes_option(lanes) if lanes is not None else None,
        gpus=tuple(parse_gpus_option(gpus)) if gpus is not None else None,
    )
    loaded = load_campaign(file)
    for warning in loaded.warnings:
        click.echo(warning.render(), err=True)
    task = None
    if shard is not None:  # a task of a job array (llem slurm): its shard of that run only
        experiments = list(order_experiments(loaded.configs, loaded.campaign))
        task = open_shard(loaded, experiments, shard=shard, run_dir=resume_dir, lanes=lane_request)
        if task.finished:
            click.echo(f"shard {shard} of {task.run.root}: finished, nothing pending", err=True)
            return EXIT_OK
        loaded, lane_request = task.loaded, task.lanes
    if dry_run:
        return dry_run_campaign(loaded, results_dir, lanes=lane_request)
    # GPU settings a crashed run left changed (whatever its campaign) go back first
    for line in restore_left_changed():
        click.echo(line, err=True)
    reporter = choose_reporter(out, progress=progress, as_json=as_json)
    request = RunRequest(
        resume=resume or resume_dir is not None,
        resume_dir=resume_dir,
        results_dir=results_dir,
        lanes=lane_request,
        shard=task,
    )
    try:
        return execute(loaded, request, reporter)
    finally:
        reporter.close()


def parse_lanes_option(text: str) -> LaneSetting:
    """``--lanes``: a whole number >= 1, or ``auto``."""
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if value.isdigit() and 1 <= int(value) <= 1024:
        return int(value)
    raise UsageProblem(
        f"--lanes {text!r}: expected a whole number from 1 to 1024, or auto",
        hint="e.g. --lanes 4 or --lanes auto",
    )


def choose_reporter(out: Output, *, progress: bool, as_json: bool) -> Reporter:
    """JSON lines, a live display on a terminal, or plain lines (cron, logs, pipes)."""
    if as_json:
        return JsonReporter()
    if progress and sys.stdout.isatty() and not out.quiet:
        return RichReporter(out.console())
    return PlainReporter(verbose=out.verbosity > 0 and not out.quiet, quiet=out.quiet)
