"""Which run the user meant: a RUN_DIR, a campaign's newest run, the run ``--resume`` continues.

``llem status``, ``results``, ``down`` and ``run --resume`` all take "a run" in the same few
shapes; they all ask here, so the rules and the messages for a wrong path are the same for each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llem_cli.campaign.names import default_project
from llem_cli.errors import UsageProblem
from llem_cli.runs.journal_read import first_event
from llem_cli.runs.layout import RunDir, create_run_dir, list_runs, run_id_sort_key
from llem_cli.runs.shards import is_sharded
from llem_cli.runs.state import run_phase

_RUN_DIR_HINT = "give <results>/<name>/<run_id> (see 'llem status') or a campaign file"


def existing_run(path: Path, *, hint: str = _RUN_DIR_HINT) -> RunDir:
    """The run directory at ``path``; a usage error (exit 2) when it is none."""
    run = RunDir(path.resolve())
    if not run.journal.exists() and not is_sharded(run.root):
        raise UsageProblem(f"{path}: not a run directory (no journal.jsonl)", hint=hint)
    return run


def newest_run_under(results: Path) -> RunDir | None:
    """The newest run of any campaign under a results directory."""
    runs: list[RunDir] = []
    if results.is_dir():
        for campaign_dir in results.iterdir():
            if campaign_dir.is_dir():
                runs.extend(list_runs(results, campaign_dir.name))
    return max(runs, key=lambda r: run_id_sort_key(r.run_id) or ("", 0), default=None)


def resolve_target(target: Path | None) -> RunDir:
    """RUN_DIR as given; FILE: its campaign's newest run; nothing: the newest under ./results."""
    if target is None:
        run = newest_run_under(Path("results"))
        if run is None:
            raise UsageProblem(
                "no run found under ./results", hint="give a RUN_DIR or a campaign FILE"
            )
        return run
    if not target.exists():
        raise UsageProblem(
            f"{target}: no such run directory or campaign file",
            hint="give <results>/<name>/<run_id> or a campaign file, or nothing for ./results",
        )
    if target.is_dir():
        return existing_run(target)
    from llem_cli.campaign.load import load_campaign  # the campaign stage, only when needed

    loaded = load_campaign(target)
    runs = list_runs(loaded.results_dir(), loaded.campaign.name)
    if not runs:
        raise UsageProblem(f"{target}: the campaign has no run yet", hint=f"llem run {target}")
    return runs[-1]


def campaign_of_run(run: RunDir) -> str | None:
    """The campaign name the run was started for (its first ``run_started``; a sharded run's:
    its campaign file's), None if unknown."""
    event = first_event(run.journal)
    name = event.get("campaign") if event and event.get("type") == "run_started" else None
    if name is None and is_sharded(run.root):
        name = run_campaign_doc(run).get("name")
    return name if isinstance(name, str) else None


def run_campaign_doc(run: RunDir) -> dict[str, Any]:
    """The run's ``campaign.yaml`` as plain YAML, unchecked (its relative paths point
    elsewhere, so it is not loaded as a campaign); empty when unreadable."""
    try:
        data = yaml.safe_load(run.campaign.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def project_of_run(run: RunDir) -> str | None:
    """The compose project recorded in a run's ``campaign.yaml`` (None if unreadable)."""
    data = run_campaign_doc(run)
    if not isinstance(data.get("name"), str):
        return None
    project = data.get("project")
    return project if isinstance(project, str) else default_project(data["name"])


def find_newest_unfinished(results_dir: Path | str, name: str) -> RunDir | None:
    """The run ``--resume`` continues: the newest run of ``name``, if it is unfinished.

    An unfinished run older than a finished one was superseded: the user started over (a
    plain ``llem run``) and that run finished, so resuming the old one would run again what
    the newer run measured, and, if the campaign file changed since, refuse for ever. None
    means "start a new run". Directories whose journal never got a ``run_started`` are not
    runs (nothing was done in them) and are passed over. Finished runs are recognised from
    the journal's tail without replaying it, so many long runs are still scanned quickly.
    """
    for run in reversed(list_runs(results_dir, name)):
        phase = run_phase(run)
        if phase == "finished":
            return None
        if phase == "unfinished":
            return run
    return None


def run_to_use(
    results: Path, name: str, *, resume: bool, resume_dir: Path | None
) -> tuple[RunDir, bool]:
    """The run directory ``llem run`` uses and whether it is a resume (docs/design.md).

    ``--resume RUN_DIR``: that run, if it is one of this campaign's; ``--resume``: the newest
    unfinished run, else a new one; neither: a new run directory.
    """
    if resume_dir is not None:
        run = existing_run(
            resume_dir, hint="give a directory under <results>/<name>/, or --resume alone"
        )
        started_for = campaign_of_run(run)
        if started_for is not None and started_for != name:
            # its lock is another project's and its records another campaign's: resuming it
            # would mix two campaigns in one journal, unguarded against the owner's own resume
            raise UsageProblem(
                f"{resume_dir}: a run of campaign '{started_for}', not '{name}'",
                hint=f"resume it with that campaign's file, or give a run under {results / name}",
            )
        return run, True
    if resume:
        found = find_newest_unfinished(results, name)
        if found is not None:
            return found, True
    return create_run_dir(results, name), False
