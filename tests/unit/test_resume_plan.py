"""Reading a run's planned keys back for a resume (fast path and fallback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llem_cli.campaign.expansion import Config, make_config_id
from llem_cli.errors import UsageProblem
from llem_cli.runner.schedule import Experiment
from llem_cli.runner.session import check_resume_compatible, write_plan
from llem_cli.runs.layout import RunDir, planned_keys


def experiments(batches: list[int]) -> list[Experiment]:
    out = []
    for batch in batches:
        params = {"batch_size": batch}
        config = Config("pytorch", params, make_config_id("pytorch", params), ("grid",))
        out += [Experiment(config, cycle, "pytorch") for cycle in (1, 2)]
    return out


def test_keys_read_line_by_line_match_the_written_plan(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    planned = experiments([1, 8, 32])
    write_plan(run, planned)
    assert planned_keys(run) == [e.key for e in planned]


def test_another_json_layout_falls_back_to_a_full_parse(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    planned = experiments([1, 8])
    run.plan.write_text(json.dumps([e.to_json() for e in planned], indent=4))
    assert planned_keys(run) == [e.key for e in planned]


def test_added_configurations_resume_changed_ones_are_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    planned = experiments([1, 8])
    write_plan(run, planned)
    # the run's own planned keys come back (so an unchanged plan is not written again)
    assert check_resume_compatible(run, experiments([1, 8, 32])) == [e.key for e in planned]
    with pytest.raises(UsageProblem, match="changed 2 planned experiment"):
        check_resume_compatible(run, experiments([1, 16]))


def test_no_plan_is_no_objection(tmp_path: Path) -> None:
    assert check_resume_compatible(RunDir(tmp_path), experiments([1])) is None
