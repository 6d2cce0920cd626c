"""``llem plan``: the experiments in execution order, as a table or streamed JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llem_cli.campaign.durations import format_duration
from llem_cli.campaign.load import load_campaign
from llem_cli.output import Output
from llem_cli.runner.schedule import Experiment, order_experiments, pause_before, stream_json


def show_plan(file: Path, *, as_json: bool, limit: int, out: Output) -> None:
    """Print the plan; JSON is streamed one object at a time (no second copy in memory)."""
    loaded = load_campaign(file)
    for warning in loaded.warnings:
        click.echo(warning.render(), err=True)
    experiments = order_experiments(loaded.configs, loaded.campaign)
    if as_json:
        stream_json(experiments, sys.stdout.write)
        return
    from rich.table import Table

    campaign = loaded.campaign
    table = Table(title=f"{campaign.name}: execution order", show_lines=False)
    for column in ("#", "key", "backend", "cycle", "params"):
        table.add_column(column, no_wrap=column != "params")
    count, gaps = 0, 0.0
    previous: Experiment | None = None
    for experiment in experiments:
        gaps += pause_before(previous, experiment, campaign)
        previous = experiment
        count += 1
        if limit == 0 or count <= limit:
            params = ", ".join(f"{k}={v}" for k, v in experiment.config.params.items())
            table.add_row(
                str(count), experiment.key, experiment.config.backend, str(experiment.cycle), params
            )
    console = out.console()
    console.print(table)
    if limit and count > limit:
        console.print(f"… {count - limit} more (--limit 0 shows all, --json for scripts)")
    backends = len({c.backend for c in loaded.configs})
    console.print(
        f"{len(loaded.configs)} configurations × {campaign.execution.cycles} cycles = "
        f"{count} experiments on {backends} backend{'s' if backends != 1 else ''}; "
        f"order {campaign.execution.order}; gaps alone take at least {format_duration(gaps)}"
    )
