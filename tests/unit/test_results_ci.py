"""``llem results``: what the interval column says for 2 cycles, a constant, and a quantity
that cannot be negative, in the table and in the ``--stats`` CSV/JSON.

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
from llem_cli.results.aggregate import nonnegative_names, signed_name
from llem_cli.runs.journal import Journal
from llem_cli.runs.layout import create_run_dir
from llem_cli.runs.record import Record


def make_run(
    tmp_path: Path, configs: list[tuple[str, dict[str, Any], list[dict[str, Any]]]]
) -> Path:
    """A finished run: per configuration (backend, params, one dict of record values per cycle)."""
    run = create_run_dir(tmp_path / "results", "ci")
    (run.root / "campaign.yaml").write_text(
        "name: ci\nresults: {dir: results, per: [output_tokens]}\n"
    )
    keys = []
    with Journal(run.journal) as journal:
        journal.append("run_started", run_id=run.run_id)
        for backend, params, cycles in configs:
            config_id = make_config_id(backend, params)
            for cycle, values in enumerate(cycles, start=1):
                rec = Record(
                    key=f"{config_id}-c{cycle}",
                    config_id=config_id,
                    cycle=cycle,
                    backend=backend,
                    service=backend,
                    params=params,
                    status="ok",
                    **values,
                )
                journal.append("experiment_finished", key=rec.key, record=rec)
                keys.append(rec.key)
        journal.append("run_finished", run_id=run.run_id, counts={})
    (run.root / "plan.json").write_text(json.dumps([{"key": k} for k in keys]))
    return run.root


def cycle(energy: float, tokens_per_s: float, **extra: Any) -> dict[str, Any]:
    metrics = {
        "output_tokens": 1024,
        "output_tokens_per_s": tokens_per_s,
        **extra.pop("metrics", {}),
    }
    return {
        "energy_j": energy,
        "duration_s": 1.0,
        "avg_power_w": 100.0,
        "metrics": metrics,
        **extra,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(
        tmp_path,
        [
            # 2 cycles: the raw t-interval of the rate is -704 to 16,424
            ("pytorch", {"batch_size": 8}, [cycle(410.0, 7186.0), cycle(455.0, 8534.0)]),
            # 3 cycles, a wide spread: the raw t-intervals of energy and rate go below 0
            (
                "vllm",
                {"batch_size": 8},
                [
                    cycle(120.0, 900.0, net_energy_j=-5.0),
                    cycle(30.0, 2000.0, net_energy_j=-50.0),
                    cycle(15.0, 15000.0, net_energy_j=-60.0),
                ],
            ),
            # 3 cycles, a narrow spread: an interval as it always was
            (
                "tensorrt",
                {"batch_size": 8},
                [cycle(10.0, 51.0), cycle(12.0, 52.0), cycle(14.0, 53.0)],
            ),
        ],
    )


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


def table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The table's cells per (backend, quantity), the backend carried down its section."""
    rows: dict[tuple[str, str], list[str]] = {}
    backend = ""
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) != 5:
            continue
        found = re.match(r"backend=(\w+)", cells[0])
        backend = found.group(1) if found else backend
        if cells[1]:
            rows[(backend, cells[1])] = cells[2:]
    return rows


def stats(run_dir: Path, *extra: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = json.loads(invoke("results", str(run_dir), "--format", "json", "--stats", *extra))
    return {(r.get("group.backend"), r["quantity"]): r for r in rows}


# ---- the table -------------------------------------------------------------------------------


def test_two_cycles_say_the_interval_needs_three(run_dir: Path) -> None:
    rows = table_rows(invoke("results", str(run_dir)))
    assert rows[("pytorch", "metrics.output_tokens_per_s")] == ["2", "7,860", "CI needs ≥ 3 cycles"]
    assert rows[("pytorch", "energy_j")] == ["2", "432.5", "CI needs ≥ 3 cycles"]
    section = [cells for (backend, _), cells in rows.items() if backend == "pytorch"]
    assert not any("–" in cells[2] for cells in section)  # no interval for n = 2 at all


def test_no_negative_bound_for_a_quantity_that_cannot_be_negative(run_dir: Path) -> None:
    text = invoke("results", str(run_dir))
    rows = table_rows(text)
    for quantity in ("energy_j", "metrics.output_tokens_per_s", "energy_per_output_token_j"):
        n, _, interval = rows[("vllm", quantity)]
        assert n == "3"
        assert re.fullmatch(r"0\* – [0-9.,]+ \(t\)", interval), interval
    for (_, quantity), cells in rows.items():  # no minus sign but where a value is negative
        assert quantity == "net_energy_j" or "-" not in "".join(cells), (quantity, cells)
    footnote = text.rstrip().splitlines()[-1]
    assert footnote.startswith("0* lower bound clipped at 0")


def test_a_constant_prints_one_value_not_an_interval(run_dir: Path) -> None:
    text = invoke("results", str(run_dir))
    assert "1,024 – 1,024" not in text
    rows = table_rows(text)
    assert rows[("tensorrt", "metrics.output_tokens")] == ["3", "1,024", "constant: no spread"]
    assert rows[("pytorch", "metrics.output_tokens")] == ["2", "1,024", "constant: no spread"]
    assert rows[("tensorrt", "avg_power_w")] == ["3", "100.0", "constant: no spread"]


def test_an_interval_above_zero_prints_as_before(run_dir: Path) -> None:
    text = invoke("results", str(run_dir))
    rows = table_rows(text)
    assert rows[("tensorrt", "energy_j")] == ["3", "12.0", "7.03 – 17.0 (t)"]


def test_no_footnote_without_a_clipped_bound(tmp_path: Path) -> None:
    run = make_run(
        tmp_path, [("pytorch", {"b": 1}, [cycle(10.0, 51.0), cycle(12.0, 52.0), cycle(14.0, 53.0)])]
    )
    text = invoke("results", str(run))
    assert "0*" not in text and "clipped" not in text


def test_group_by_counts_values_not_cycles(run_dir: Path) -> None:
    rows = table_rows(invoke("results", str(run_dir), "--group-by", "backend"))
    assert rows[("pytorch", "energy_j")][2] == "CI needs ≥ 3 values"


# ---- CSV and JSON: the same decisions, fields added --------------------------------------------


def test_json_stats_carry_n_and_say_why_there_is_no_interval(run_dir: Path) -> None:
    rows = stats(run_dir)
    few = rows[("pytorch", "metrics.output_tokens_per_s")]
    assert (few["n"], few["mean"], few["ci_low"], few["ci_high"]) == (2, 7860.0, None, None)
    assert (few["ci_method"], few["ci_note"], few["ci_low_clipped"]) == (
        None,
        "needs n >= 3",
        False,
    )
    assert few["std"] == pytest.approx(953.18, abs=0.01)  # the spread is still there
    constant = rows[("tensorrt", "metrics.output_tokens")]
    assert (constant["mean"], constant["std"], constant["ci_low"], constant["ci_high"]) == (
        1024.0,
        0.0,
        None,
        None,
    )
    assert constant["ci_note"] == "constant"
    clipped = rows[("vllm", "energy_j")]
    assert clipped["ci_low"] == 0.0 and clipped["ci_high"] > clipped["mean"] == 55.0
    assert (clipped["ci_method"], clipped["ci_low_clipped"]) == ("t", True)
    assert clipped["ci_note"] == "lower bound clipped at 0 (cannot be negative)"
    plain = rows[("tensorrt", "energy_j")]
    assert (plain["ci_note"], plain["ci_low_clipped"], plain["ci_method"]) == (None, False, "t")
    assert plain["ci_low"] == pytest.approx(7.03, abs=0.01)


def test_a_signed_quantity_keeps_its_negative_bound(run_dir: Path) -> None:
    net = stats(run_dir)[("vllm", "net_energy_j")]
    assert net["n"] == 3 and net["ci_low"] < net["mean"] < 0
    assert (net["ci_note"], net["ci_low_clipped"]) == (None, False)


def test_csv_stats_have_the_same_fields(run_dir: Path) -> None:
    text = invoke("results", str(run_dir), "--format", "csv", "--stats")
    rows = {(r["group.backend"], r["quantity"]): r for r in csv.DictReader(io.StringIO(text))}
    for name in ("n", "missing", "mean", "std", "ci_low", "ci_high", "ci_method", "ci_note"):
        assert name in rows[("vllm", "energy_j")]
    assert rows[("vllm", "energy_j")]["ci_low"] == "0.0"
    assert rows[("vllm", "energy_j")]["ci_low_clipped"] == "true"
    assert rows[("pytorch", "energy_j")]["ci_low"] == ""  # null
    assert rows[("pytorch", "energy_j")]["ci_note"] == "needs n >= 3"


# ---- which quantities cannot be negative ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "signed"),
    [
        ("energy_j", False),
        ("metrics.output_tokens_per_s", False),
        ("max_temp_c", False),
        ("metrics.ttft_ms", False),
        ("net_energy_j", True),
        ("metrics.power_delta_w", True),
        ("metrics.netEnergy", True),
        ("metrics.clock_offset_mhz", True),
        ("metrics.network_bytes", False),  # "network" is not "net"
    ],
)
def test_signed_name(name: str, signed: bool) -> None:
    assert signed_name(name) is signed


def test_one_negative_value_anywhere_makes_a_quantity_signed() -> None:
    groups = [
        {"metrics.x": [1.0, 2.0], "energy_j": [1.0], "metrics.y": [None]},
        {"metrics.x": [-0.5, None], "energy_j": [0.0]},
    ]
    assert nonnegative_names(groups) == {"energy_j", "metrics.y"}


def test_a_metric_negative_in_another_group_is_not_clipped(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        [
            ("a", {"b": 1}, [cycle(1.0, 1.0, metrics={"skew": v}) for v in (1.0, 50.0, 90.0)]),
            ("b", {"b": 1}, [cycle(1.0, 1.0, metrics={"skew": v}) for v in (-1.0, -2.0, -3.0)]),
        ],
    )
    skew = stats(run)[("a", "metrics.skew")]
    assert skew["ci_low"] < 0 and not skew["ci_low_clipped"]
