"""``llem results`` of a run with lanes: ``--group-by lane`` / ``gpu``, and the lane columns of the
records' CSV (``results.csv`` writes the same text)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llem_cli.cli import cli
from llem_cli.results.aggregate import group_axes, group_label, unknown_axes
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import create_run_dir
from llem_cli.runs.record import RECORD_FIELDS, Record
from llem_cli.runs.results_csv import CSV_COLUMNS, csv_text


def record(
    key: str,
    energy: float,
    lane: int | None,
    uuids: list[str] | None,
    params: dict[str, Any] | None = None,
    status: str = "ok",
) -> Record:
    return Record(
        key=key,
        config_id=key.split("-")[0],
        cycle=int(key.rsplit("c", 1)[1]),
        backend="vllm",
        service="vllm",
        params=params if params is not None else {"batch": 8},
        status=status,
        energy_j=energy,
        duration_s=1.0,
        lane=lane,
        gpu_uuids=uuids,
    )


RECORDS = [
    record("aaa-c1", 10.0, 0, ["GPU-a"]),
    record("aaa-c2", 20.0, 1, ["GPU-b", "GPU-c"]),
    record("aaa-c3", 30.0, 0, ["GPU-a"]),
    record("bbb-c1", 40.0, 1, ["GPU-b", "GPU-c"]),
    record("bbb-c2", 50.0, 0, ["GPU-a"], status="failed"),
    record("bbb-c3", 60.0, None, None),  # run without lanes before a resume with them
]


def write_run(tmp_path: Path, records: list[Record]) -> Path:
    run = create_run_dir(tmp_path / "results", "lanes")
    (run.root / "campaign.yaml").write_text("name: lanes\n")
    (run.root / "plan.json").write_text(json.dumps([{"key": r.key} for r in records]))
    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id)
        for rec in records:
            journal.append("experiment_finished", key=rec.key, record=rec)
        journal.append("run_finished", run_id=run.run_id, counts={})
    return run.root


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def energy_by(run_dir: Path, axis: str) -> dict[Any, dict[str, Any]]:
    rows = json.loads(
        invoke("results", str(run_dir), "--format", "json", "--stats", "--group-by", axis)
    )
    return {row[f"group.{axis}"]: row for row in rows if row["quantity"] == "energy_j"}


def test_group_by_lane(tmp_path: Path) -> None:
    rows = energy_by(write_run(tmp_path, RECORDS), "lane")
    assert list(rows) == [0, 1, None]
    assert rows[0]["n"] == 2 and rows[0]["mean"] == pytest.approx(20.0)  # the failed one: out
    assert rows[0]["statuses"] == {"ok": 2, "failed": 1}
    assert rows[1]["n"] == 2 and rows[1]["mean"] == pytest.approx(30.0)
    assert rows[None]["n"] == 1 and rows[None]["mean"] == pytest.approx(60.0)


def test_group_by_gpu_joins_the_uuids(tmp_path: Path) -> None:
    rows = energy_by(write_run(tmp_path, RECORDS), "gpu")
    assert list(rows) == ["GPU-a", "GPU-b,GPU-c", None]
    assert rows["GPU-b,GPU-c"]["mean"] == pytest.approx(30.0)
    assert rows[None]["n"] == 1


def test_group_by_lane_and_a_param_in_the_table(tmp_path: Path) -> None:
    text = invoke("results", str(write_run(tmp_path, RECORDS)), "--group-by", "lane,batch")
    assert "lane=0" in text and "lane=1" in text and "lane=null" in text
    assert "batch=8" in text


def test_a_param_of_the_same_name_wins() -> None:
    rec = record("ccc-c1", 1.0, 1, ["GPU-b"], params={"lane": "fast", "gpu": "h100"})
    assert group_label(rec, ["lane", "gpu"]) == {"lane": "fast", "gpu": "h100"}
    plain = record("ccc-c2", 1.0, 1, ["GPU-b"])
    assert group_label(plain, ["lane", "gpu"]) == {"lane": 1, "gpu": "GPU-b"}
    assert group_label(record("ccc-c3", 1.0, None, []), ["gpu"]) == {"gpu": None}


def test_lane_axes_are_listed_where_records_have_lanes_and_always_accepted() -> None:
    assert group_axes(RECORDS) == [
        "backend",
        "service",
        "config_id",
        "cycle",
        "lane",
        "gpu",
        "batch",
    ]
    without = [record("aaa-c1", 1.0, None, None)]
    assert group_axes(without) == ["backend", "service", "config_id", "cycle", "batch"]
    assert unknown_axes(without, ["lane", "gpu", "gpus"]) == ["gpus"]


def test_an_unknown_axis_names_lane_and_gpu_among_the_valid(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["results", str(write_run(tmp_path, RECORDS)), "--stats", "--group-by", "lanes"]
    )
    assert result.exit_code == 2
    assert "(valid: backend, service, config_id, cycle, lane, gpu, batch)" in result.stderr


def test_the_records_csv_has_lane_and_gpu_uuids_columns(tmp_path: Path) -> None:
    assert "lane" in CSV_COLUMNS and "gpu_uuids" in CSV_COLUMNS
    assert CSV_COLUMNS.index("gpu_uuids") == RECORD_FIELDS.index("gpu_uuids")
    text = invoke("results", str(write_run(tmp_path, RECORDS)), "--format", "csv")
    assert text == csv_text(RECORDS)  # results.csv holds the same text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["lane"] for row in rows] == ["0", "1", "0", "1", "0", ""]
    assert json.loads(rows[1]["gpu_uuids"]) == ["GPU-b", "GPU-c"]  # JSON, as params are
    assert rows[1]["gpu_uuids"] == '["GPU-b", "GPU-c"]'
    assert rows[5]["gpu_uuids"] == ""  # null: empty
    assert json.loads(rows[0]["params"]) == {"batch": 8}


def test_the_records_json_has_the_lane_fields(tmp_path: Path) -> None:
    records = json.loads(invoke("results", str(write_run(tmp_path, RECORDS)), "--format", "json"))
    assert [(r["lane"], r["gpu_uuids"]) for r in records[:2]] == [
        (0, ["GPU-a"]),
        (1, ["GPU-b", "GPU-c"]),
    ]
    assert records[5]["lane"] is None and records[5]["gpu_uuids"] is None
