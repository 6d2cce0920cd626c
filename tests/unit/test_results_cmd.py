"""``llem results``: records and per-group statistics from a journal with known values."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import create_run_dir
from llem_cli.runs.record import Record

T_975_DF2 = 4.302652729911275  # Student t quantile, 97.5 %, 2 degrees of freedom


def record(key: str, backend: str, batch: int, status: str = "ok", **values: object) -> Record:
    return Record(
        key=key,
        config_id=key.split("-")[0],
        cycle=int(key.rsplit("c", 1)[1]),
        backend=backend,
        service=backend,
        params={"batch_size": batch},
        status=status,
        **values,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = create_run_dir(tmp_path / "results", "stats")
    (run.root / "campaign.yaml").write_text("name: stats\nresults: {dir: results, per: [tokens]}\n")
    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id)
        for cycle, energy in enumerate([10.0, 12.0, 14.0], start=1):
            rec = record(
                f"aaa-c{cycle}",
                "pytorch",
                8,
                energy_j=energy,
                duration_s=1.0,
                metrics={"tokens": 100, "tokens_per_s": 50.0 + cycle},
            )
            journal.append("experiment_finished", key=rec.key, record=rec)
        # a failed experiment: its energy must not enter the statistics
        bad = record("aaa-c4", "pytorch", 8, status="failed", energy_j=1000.0, duration_s=9.0)
        journal.append("experiment_finished", key=bad.key, record=bad)
        # a configuration measured on a host without NVML: energy null, never 0
        for cycle in (1, 2):
            rec = record(f"bbb-c{cycle}", "vllm", 8, duration_s=2.0 + cycle)
            journal.append("experiment_finished", key=rec.key, record=rec)
        journal.append("run_finished", run_id=run.run_id, counts={})
    (run.root / "plan.json").write_text(
        json.dumps(
            [{"key": k} for k in ["aaa-c1", "aaa-c2", "aaa-c3", "aaa-c4", "bbb-c1", "bbb-c2"]]
        )
    )
    return run.root


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def stats(run_dir: Path, *extra: str) -> dict[tuple[str, str], dict]:
    rows = json.loads(invoke("results", str(run_dir), "--format", "json", "--stats", *extra))
    return {(row.get("group.backend"), row["quantity"]): row for row in rows}


def test_mean_and_student_t_interval_match_hand_computation(run_dir: Path) -> None:
    rows = stats(run_dir)
    energy = rows[("pytorch", "energy_j")]
    assert energy["n"] == 3  # the failed record is left out
    assert energy["mean"] == pytest.approx(12.0)
    half = T_975_DF2 * 2.0 / math.sqrt(3)
    assert energy["ci_low"] == pytest.approx(12.0 - half, rel=1e-6)
    assert energy["ci_high"] == pytest.approx(12.0 + half, rel=1e-6)
    assert energy["ci_method"] == "t"
    assert energy["statuses"] == {"ok": 3, "failed": 1}


def test_energy_per_token_from_results_per(run_dir: Path) -> None:
    per_token = stats(run_dir)[("pytorch", "energy_per_tokens_j")]
    assert per_token["mean"] == pytest.approx(0.12)
    assert per_token["n"] == 3


def test_unmeasured_energy_is_missing_not_zero(run_dir: Path) -> None:
    energy = stats(run_dir)[("vllm", "energy_j")]
    assert energy["n"] == 0 and energy["missing"] == 2
    assert energy["mean"] is None
    assert stats(run_dir)[("vllm", "duration_s")]["mean"] == pytest.approx(3.5)


def test_numeric_metrics_are_summarised(run_dir: Path) -> None:
    assert stats(run_dir)[("pytorch", "metrics.tokens_per_s")]["mean"] == pytest.approx(52.0)


def test_group_by_axis_merges_backends(run_dir: Path) -> None:
    rows = json.loads(
        invoke("results", str(run_dir), "--format", "json", "--stats", "--group-by", "batch_size")
    )
    duration = next(r for r in rows if r["quantity"] == "duration_s")
    assert duration["group.batch_size"] == 8
    assert duration["n"] == 5  # 3 pytorch ok + 2 vllm ok


def test_json_and_csv_give_one_record_per_experiment_in_plan_order(run_dir: Path) -> None:
    records = json.loads(invoke("results", str(run_dir), "--format", "json"))
    assert [r["key"] for r in records] == [
        "aaa-c1",
        "aaa-c2",
        "aaa-c3",
        "aaa-c4",
        "bbb-c1",
        "bbb-c2",
    ]
    assert records[4]["energy_j"] is None
    rows = list(csv.DictReader(io.StringIO(invoke("results", str(run_dir), "--format", "csv"))))
    assert [r["key"] for r in rows] == [r["key"] for r in records]
    assert rows[4]["energy_j"] == ""  # null, not 0
    assert json.loads(rows[0]["metrics"]) == {"tokens": 100, "tokens_per_s": 51.0}


def test_table_shows_groups_and_says_not_measured(run_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["results", str(run_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "backend=pytorch" in result.output and "batch_size=8" in result.output
    assert "(t)" in result.output  # the interval says how it was computed
    assert "not measured" in result.output
    assert "(1 failed, 3 ok)" in result.output


def test_not_a_run_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["results", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.stderr
    assert "Traceback" not in result.output


def test_a_retry_sets_the_earlier_attempts_report_aside(tmp_path: Path) -> None:
    from llem_cli.runner.records import read_metrics, set_aside_stale_result

    (tmp_path / "result.json").write_text('{"tokens": 1}\n')
    assert set_aside_stale_result(tmp_path) == tmp_path / "result.attempt-1.json"
    assert read_metrics(tmp_path) == (None, None)  # nothing stale is merged
    (tmp_path / "result.json").write_text('{"tokens": 2}\n')
    assert set_aside_stale_result(tmp_path) == tmp_path / "result.attempt-2.json"
    assert json.loads((tmp_path / "result.attempt-1.json").read_text()) == {"tokens": 1}
    assert set_aside_stale_result(tmp_path) is None


# ---- --group-by names a field the records have --------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
@pytest.mark.parametrize("group_by", ["zzz", "backend,zzz", "batch_sise"])
def test_unknown_group_by_field_is_one_line_exit_2(run_dir: Path, fmt: str, group_by: str) -> None:
    result = CliRunner().invoke(
        cli, ["results", str(run_dir), "--format", fmt, "--stats", "--group-by", group_by]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    unknown = ",".join(a for a in group_by.split(",") if a != "backend")
    assert f"--group-by {unknown}: no such field" in lines[0]
    assert "(valid: backend, service, config_id, cycle, batch_size)" in lines[0]


def test_group_by_record_fields(run_dir: Path) -> None:
    rows = json.loads(
        invoke("results", str(run_dir), "--format", "json", "--stats", "--group-by", "cycle")
    )
    energy = {r["group.cycle"]: r for r in rows if r["quantity"] == "energy_j"}
    assert set(energy) == {1, 2, 3, 4}
    assert energy[1]["n"] == 1 and energy[1]["mean"] == pytest.approx(10.0)
    assert energy[1]["statuses"] == {"ok": 2}  # aaa-c1 and bbb-c1
    rows = json.loads(
        invoke("results", str(run_dir), "--format", "json", "--stats", "--group-by", "service")
    )
    assert {r["group.service"] for r in rows} == {"pytorch", "vllm"}


def test_missing_run_dir_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["results", str(tmp_path / "nonexist")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'nonexist'}: no such run directory or campaign file" in result.stderr
    assert len(result.stderr.splitlines()) == 1
