"""Which run the user meant: a RUN_DIR, a campaign's newest run, the run ``--resume`` continues."""

from __future__ import annotations

from pathlib import Path

from llem_cli.runs.journal_read import first_event
from llem_cli.runs.layout import RunDir, list_runs
from llem_cli.runs.state import run_phase


def campaign_of_run(run: RunDir) -> str | None:
    """The campaign name the run was started for (its first ``run_started``), None if unknown."""
    event = first_event(run.journal)
    name = event.get("campaign") if event and event.get("type") == "run_started" else None
    return name if isinstance(name, str) else None


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
