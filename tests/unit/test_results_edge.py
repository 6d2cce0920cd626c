"""``llem results`` on awkward runs: look-alike params, huge numbers, all-failed configurations.

Each test builds a run directory with a real journal, as ``llem run`` leaves one.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llem_cli.campaign.expansion import make_config_id
from llem_cli.cli import cli
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import create_run_dir
from llem_cli.runs.record import Record


def make_run(tmp_path: Path, experiments: list[dict[str, Any]]) -> Path:
    """A finished run of ``experiments`` (backend, params, cycle, status and record values)."""
    run = create_run_dir(tmp_path / "results", "edge")
    (run.root / "campaign.yaml").write_text("name: edge\nresults: {dir: results}\n")
    keys = []
    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id)
        for spec in experiments:
            spec = dict(spec)
            backend = spec.pop("backend", "pytorch")
            params = spec.pop("params")
            cycle = spec.pop("cycle")
            config_id = make_config_id(backend, params)
            rec = Record(
                key=f"{config_id}-c{cycle}",
                config_id=config_id,
                cycle=cycle,
                backend=backend,
                service=backend,
                params=params,
                status=spec.pop("status", "ok"),
                **spec,
            )
            journal.append("experiment_finished", key=rec.key, record=rec)
            keys.append(rec.key)
        journal.append("run_finished", run_id=run.run_id, counts={})
    (run.root / "plan.json").write_text(json.dumps([{"key": k} for k in keys]))
    return run.root


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


def stats_rows(run_dir: Path, *extra: str) -> list[dict[str, Any]]:
    return json.loads(invoke("results", str(run_dir), "--format", "json", "--stats", *extra))


def energy_rows(run_dir: Path, *extra: str) -> list[dict[str, Any]]:
    return [r for r in stats_rows(run_dir, *extra) if r["quantity"] == "energy_j"]


# ---- 1. true, 1 and 1.0 are different configurations ---------------------------------------------


@pytest.fixture
def lookalike_run(tmp_path: Path) -> Path:
    experiments = []
    for value, energy in [(1, 10.0), (True, 20.0), (1.5, 30.0), (1.0, 40.0)]:
        for cycle in (1, 2):
            experiments.append({"params": {"f": value}, "cycle": cycle, "energy_j": energy + cycle})
    return make_run(tmp_path, experiments)


def _by_label(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {json.dumps(r["group.f"]): r for r in rows}


def test_default_grouping_is_one_group_per_configuration(lookalike_run: Path) -> None:
    rows = energy_rows(lookalike_run)
    assert len(rows) == 4
    by_label = _by_label(rows)
    assert set(by_label) == {"1", "true", "1.5", "1.0"}
    for text, mean in [("1", 11.5), ("true", 21.5), ("1.5", 31.5), ("1.0", 41.5)]:
        assert by_label[text]["n"] == 2
        assert by_label[text]["mean"] == pytest.approx(mean)
        assert by_label[text]["statuses"] == {"ok": 2}


def test_group_by_param_keeps_json_types_apart(lookalike_run: Path) -> None:
    rows = energy_rows(lookalike_run, "--group-by", "f")
    by_label = _by_label(rows)
    assert set(by_label) == {"1", "true", "1.5", "1.0"}
    assert all(r["n"] == 2 for r in rows)
    assert by_label["true"]["mean"] == pytest.approx(21.5)
    assert by_label["1"]["mean"] == pytest.approx(11.5)


def test_group_by_still_pools_equal_values(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        [
            {"backend": b, "params": {"f": True}, "cycle": c, "energy_j": 1.0 + c}
            for b in ("pytorch", "vllm")
            for c in (1, 2)
        ],
    )
    (row,) = energy_rows(run, "--group-by", "f")
    assert row["group.f"] is True and row["n"] == 4


def test_table_and_csv_labels_print_values_as_written(lookalike_run: Path) -> None:
    table = invoke("results", str(lookalike_run))
    labels = re.findall(r"\bf=(\S+)", table)
    assert sorted(labels) == ["1", "1.0", "1.5", "true"]
    text = invoke("results", str(lookalike_run), "--format", "csv", "--stats")
    labels = {r["group.f"] for r in csv.DictReader(io.StringIO(text))}
    assert labels == {"1", "true", "1.5", "1.0"}


def test_table_quotes_a_string_that_looks_like_another_value(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        [
            {"params": {"f": "true"}, "cycle": 1, "energy_j": 1.0},
            {"params": {"f": True}, "cycle": 1, "energy_j": 2.0},
        ],
    )
    table = invoke("results", str(run))
    assert 'f="true"' in table and "f=true" in table


# ---- 2. a huge number in one record does not sink the report ---------------------------------


@pytest.fixture
def huge_run(tmp_path: Path) -> Path:
    return make_run(
        tmp_path,
        [
            {
                "params": {"b": 1},
                "cycle": 1,
                "energy_j": 10.0,
                "metrics": {"big": 10**400, "huge": 1e308, "tokens": 10**400},
            },
            {
                "params": {"b": 1},
                "cycle": 2,
                "energy_j": 12.0,
                "metrics": {"big": 5, "huge": 1e308, "tokens": 100},
            },
        ],
    )


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_huge_numbers_do_not_crash_results(huge_run: Path, fmt: str) -> None:
    invoke("results", str(huge_run), "--format", fmt, "--stats")
    invoke("results", str(huge_run), "--format", fmt)


def test_a_number_too_large_for_a_float_counts_as_missing(huge_run: Path) -> None:
    rows = {r["quantity"]: r for r in stats_rows(huge_run)}
    big = rows["metrics.big"]
    assert (big["n"], big["missing"], big["mean"]) == (1, 1, 5.0)
    per_token = rows["energy_per_tokens_j"]
    assert (per_token["n"], per_token["missing"]) == (1, 1)
    assert per_token["mean"] == pytest.approx(0.12)
    energy = rows["energy_j"]
    assert energy["n"] == 2 and energy["mean"] == pytest.approx(11.0)


def test_statistics_that_overflow_are_null(huge_run: Path) -> None:
    huge = {r["quantity"]: r for r in stats_rows(huge_run)}["metrics.huge"]
    assert huge["n"] == 2
    assert (huge["mean"], huge["std"], huge["ci_low"], huge["ci_high"]) == (None,) * 4
    assert huge["ci_method"] is None
    table = invoke("results", str(huge_run))
    assert "metrics.huge" in table
    assert "inf" not in table.lower().replace("information", "")


# ---- 3. a configuration whose experiments all failed ---------------------------------------------


@pytest.fixture
def failed_run(tmp_path: Path) -> Path:
    return make_run(
        tmp_path,
        [{"params": {"b": 1}, "cycle": c, "status": "failed", "energy_j": 99.0} for c in (1, 2)],
    )


def test_table_says_no_ok_experiment_when_all_failed(failed_run: Path) -> None:
    table = invoke("results", str(failed_run))
    assert "no ok experiment" in table
    assert "not measured" not in table
    assert "(2 failed)" in table


def test_table_says_not_measured_only_for_ok_records_without_energy(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        [
            {"params": {"b": 1}, "cycle": 1, "status": "failed", "energy_j": 99.0},
            {"params": {"b": 2}, "cycle": 1, "duration_s": 1.0},
        ],
    )
    table = invoke("results", str(run))
    assert "no ok experiment" in table
    assert table.count("not measured") == 1
