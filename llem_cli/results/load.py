"""A run's records in plan order, and the run's own campaign settings that shape the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from llem_cli.errors import UsageProblem
from llem_cli.runs.layout import RunDir, planned_keys
from llem_cli.runs.record import Record
from llem_cli.runs.resolve import resolve_target, run_campaign_doc
from llem_cli.runs.shards import replay_run


@dataclass
class RunRecords:
    """The latest record of every experiment that has one, in plan order."""

    run: RunDir
    records: list[Record]
    energy_per: list[str]


def _energy_per(run: RunDir) -> list[str]:
    """``results.per`` from the run's copy of the campaign (read raw: its paths are elsewhere)."""
    results = run_campaign_doc(run).get("results")
    per = results.get("per") if isinstance(results, dict) else None
    return [p for p in per if isinstance(p, str)] if isinstance(per, list) else []


def load_run_records(path: Path) -> RunRecords:
    """Records of the run directory at ``path``, or of a campaign file's newest run."""
    if not path.exists():
        raise UsageProblem(
            f"{path}: no such run directory or campaign file",
            hint="give <results>/<name>/<run_id> (see 'llem status') or a campaign file",
        )
    run = resolve_target(path)
    state = replay_run(run)  # a sharded run: every shard's journal
    order = {key: i for i, key in enumerate(planned_keys(run) or [])}
    records = sorted(state.records.values(), key=lambda r: order.get(r.key, len(order)))
    # replayed without slim=True: every record is in full, none a Settled stand-in
    return RunRecords(run, cast("list[Record]", records), _energy_per(run))
