"""``llem plan``: the experiments in execution order, as a table or streamed JSON."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click

from llem_cli.campaign.durations import format_duration
from llem_cli.campaign.load import load_campaign
from llem_cli.campaign.model import Campaign
from llem_cli.campaign.servers import server_id, server_params
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
    serving = any(b.serving for b in campaign.backends.values())
    table = Table(title=f"{campaign.name}: execution order", show_lines=False)
    columns = ["#", "key", "backend", "cycle", *(["server"] if serving else []), "params"]
    for column in columns:
        table.add_column(column, no_wrap=column != "params")
    count, gaps = 0, 0.0
    previous: Experiment | None = None
    servers = ServerStarts(campaign)
    for experiment in experiments:
        gaps += pause_before(previous, experiment, campaign)
        previous = experiment
        count += 1
        started = servers.add(experiment)
        if limit == 0 or count <= limit:
            params = ", ".join(f"{k}={v}" for k, v in experiment.config.params.items())
            row = [str(count), experiment.key, experiment.config.backend, str(experiment.cycle)]
            if serving:
                sid = server_id(campaign, experiment.config)
                row.append("" if sid is None else (f"{sid} (start)" if started else sid))
            table.add_row(*row, params)
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
    for line in servers.lines():
        console.print(line)


class ServerStarts:
    """The server starts an order implies (one lane): a start wherever a service's server
    configuration changes; and which experiments share each server configuration."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.current: dict[str, str] = {}
        self.starts: Counter[str] = Counter()
        self.shared: Counter[str] = Counter()
        self.params: dict[str, dict[str, object]] = {}
        self.backend: dict[str, str] = {}

    def add(self, experiment: Experiment) -> bool:
        """Count ``experiment``; whether its server starts before it."""
        sid = server_id(self.campaign, experiment.config)
        if sid is None:
            return False
        backend = self.campaign.backends[experiment.config.backend]
        self.shared[sid] += 1
        self.params.setdefault(sid, server_params(backend, experiment.config))
        self.backend.setdefault(sid, experiment.config.backend)
        if self.current.get(experiment.service) == sid:
            return False
        self.current[experiment.service] = sid
        self.starts[sid] += 1
        return True

    def lines(self) -> list[str]:
        """The summary: starts against the minimum, and each server configuration's share."""
        if not self.shared:
            return []
        total, least = sum(self.starts.values()), len(self.shared)
        more = "" if total == least else f" (grouped order: {least})"
        out = [f"server starts: {total} for {least} server configuration(s){more}"]
        for sid, n in self.shared.items():
            params = ", ".join(f"{k}={v}" for k, v in self.params[sid].items()) or "no params"
            out.append(
                f"  server {sid} ({self.backend[sid]}: {params}): started {self.starts[sid]}x, "
                f"{n} experiment(s)"
            )
        return out
