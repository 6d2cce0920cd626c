"""``llem down``: remove the containers (and networks) a run left behind, by label."""

from __future__ import annotations

from pathlib import Path

import yaml

from llem_cli.campaign.load import load_campaign
from llem_cli.docker.manager import teardown_by_label
from llem_cli.errors import UsageProblem
from llem_cli.output import Output
from llem_cli.run.rundir import RunDir


def project_of_run(run: RunDir) -> str | None:
    """The compose project recorded in a run's ``campaign.yaml`` (None if unreadable)."""
    try:
        data = yaml.safe_load(run.campaign.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    project = data.get("project")
    return project if isinstance(project, str) else f"llem-{data['name']}"


def bring_down(target: Path, out: Output) -> int:
    """FILE: every container of its compose project; RUN_DIR: that run's (and its project's)."""
    if target.is_dir():
        run = RunDir(target.resolve())
        if not run.journal.exists() and not run.campaign.exists():
            raise UsageProblem(
                f"{target}: not a run directory (no journal.jsonl)",
                hint="give a campaign file or <results>/<name>/<run_id>",
            )
        project = project_of_run(run)
        # A run id is a timestamp, unique only among its campaign's runs: another campaign
        # started in the same second has the same llem.run label. The run's containers are
        # all in its compose project, so the project alone names them without that risk.
        if project is not None:
            removed = teardown_by_label(project=project)
        else:
            removed = teardown_by_label(run_id=run.run_id)
        what = f"run {run.run_id}"
    else:
        loaded = load_campaign(target)
        project = loaded.campaign.project_name
        removed = teardown_by_label(project=project)
        what = f"compose project {project}"
    out.line(f"{what}: removed {len(removed)} container(s)")
    return 0
