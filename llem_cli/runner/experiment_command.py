"""The argv and environment of one experiment exec (the container contract (docs/design.md §3.5)).

Shared by the real loop and ``--dry-run``, so the dry run prints exactly what would run.
"""

from __future__ import annotations

from typing import Any

from llem_cli.campaign.model import Campaign
from llem_cli.campaign.placeholders import render
from llem_cli.docker.contract import container_experiment_dir, experiment_env
from llem_cli.runner.schedule import Experiment


def placeholder_values(run_id: str, experiment: Experiment) -> dict[str, Any]:
    """Params plus the built-ins ``run_id, key, config_id, cycle, backend, experiment_dir``."""
    return {
        **experiment.config.params,
        "run_id": run_id,
        "key": experiment.key,
        "config_id": experiment.config.config_id,
        "cycle": experiment.cycle,
        "backend": experiment.config.backend,
        "experiment_dir": container_experiment_dir(experiment.key),
    }


def experiment_argv(campaign: Campaign, run_id: str, experiment: Experiment) -> list[str]:
    """The backend's command with every placeholder rendered."""
    values = placeholder_values(run_id, experiment)
    command = campaign.backends[experiment.config.backend].command
    return [render(item, values) for item in command]


def experiment_environment(
    campaign: Campaign, run_id: str, experiment: Experiment
) -> dict[str, str]:
    """The backend's ``env`` plus llem's ``LLEM_*`` variables (llem's win)."""
    return experiment_env(
        run_id=run_id,
        key=experiment.key,
        cycle=experiment.cycle,
        params=experiment.config.params,
        experiment_dir=container_experiment_dir(experiment.key),
        extra=campaign.backends[experiment.config.backend].env,
    )
