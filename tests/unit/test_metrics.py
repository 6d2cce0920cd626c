"""llem's normalized metrics (``backends.<name>.metrics``): reading them out of ``result.json``.

The pure parts (runner/metrics.py: JSON lines, dotted paths, numbers, formulas) as tables;
then the record builder on real files in a temporary experiment directory, and what
``llem results`` and the records' CSV make of them.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from llem_cli.campaign.expansion import Config
from llem_cli.campaign.model import METRIC_NAMES, Backend, MetricFormula, Metrics
from llem_cli.docker.outcome import ExecOutcome
from llem_cli.results.aggregate import aggregate
from llem_cli.runner.metrics import describe, evaluate, lookup, normalize, parse_report
from llem_cli.runner.records import read_metrics, record_from_outcome
from llem_cli.runner.schedule import Experiment
from llem_cli.runs.record import Record
from llem_cli.runs.results_csv import CSV_COLUMNS, csv_text

# ---- the campaign field ------------------------------------------------------------------------


def test_the_model_accepts_exactly_the_normalized_names() -> None:
    assert tuple(Metrics.model_fields) == METRIC_NAMES
    backend = Backend.model_validate(
        {
            "command": ["bench"],
            "metrics": {
                "output_tokens": "results.0.tokens",
                "ttft_ms": None,  # null: not mapped
                "output_tokens_per_s": {"params": ["n", "len"], "divide_by": "elapsed"},
            },
        }
    )
    mapped = backend.metrics.mapped()
    assert list(mapped) == ["output_tokens", "output_tokens_per_s"]  # METRIC_NAMES order
    assert mapped["output_tokens"] == "results.0.tokens"
    assert mapped["output_tokens_per_s"] == MetricFormula(params=["n", "len"], divide_by="elapsed")
    assert Backend.model_validate({"command": ["bench"]}).metrics.mapped() == {}


# ---- result.json: one object, or JSON lines ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "report"),
    [
        ('{"a": 1}', {"a": 1}),
        ('{\n  "a": 1,\n  "b": {"c": 2}\n}\n', {"a": 1, "b": {"c": 2}}),  # pretty-printed
        ('{"run": 1}\n{"run": 2}\n', {"run": 2}),  # SGLang appends a line per run
        ('{"run": 1}\n{"run": 2}\n\n', {"run": 2}),  # blank lines are passed over
        ('{"run": 1}\n[1, 2]\n', {"run": 1}),  # the last line that is an object
        ('{"run": 1}\n{"run": 2', {"run": 1}),  # a torn last line is no object
        ('progress 50%\n{"run": 1}\n', {"run": 1}),
    ],
)
def test_the_report_is_the_object_or_the_last_object_line(text: str, report: dict) -> None:
    assert parse_report(text) == (report, None)


def test_a_report_that_is_no_object_says_why() -> None:
    assert parse_report("[1, 2]") == (None, "result.json is not a JSON object")
    assert parse_report("") == (None, parse_report("")[1])
    data, why = parse_report("nope\n[1]\n")
    assert data is None and why is not None and why.startswith("result.json unreadable")


def test_read_metrics_takes_the_last_json_line(tmp_path: Path) -> None:
    lines = [{"output_throughput": 10.0}, {"output_throughput": 20.0}]
    (tmp_path / "result.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert read_metrics(tmp_path) == ({"output_throughput": 20.0}, None)


# ---- dotted paths ------------------------------------------------------------------------------

REPORT: dict[str, Any] = {
    "elapsed_time": 2.0,
    "num_requests": 8,
    "performance": {"output_throughput": 512.5, "note": "fast", "ok": True, "nothing": None},
    "results": [{"tokens": 10}, {"tokens": 30}],
    "by_rank": {"0": {"tokens": 7}},
    "zero": 0,
    "huge": 10**400,
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("elapsed_time", 2.0),
        ("performance.output_throughput", 512.5),
        ("results.1.tokens", 30),  # a number indexes a list
        ("by_rank.0.tokens", 7),  # ... and is a key in a mapping
    ],
)
def test_a_path_finds_its_value(path: str, value: Any) -> None:
    assert lookup(REPORT, path) == (value, None)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("tokens", "tokens is not in result.json (the top level has no key 'tokens')"),
        (
            "performance.output_tokens",
            "performance.output_tokens is not in result.json "
            "(performance has no key 'output_tokens')",
        ),
        (
            "results.2.tokens",
            "results.2.tokens is not in result.json (results has 2 item(s), no index 2)",
        ),
        (
            "results.last",
            "results.last is not in result.json (results is a list: index it by number)",
        ),
        (
            "elapsed_time.s",
            "elapsed_time.s is not in result.json (elapsed_time is float, not a mapping)",
        ),
    ],
)
def test_a_missing_path_says_where_it_ends(path: str, why: str) -> None:
    assert lookup(REPORT, path) == (None, why)


# ---- normalize: values, nulls with reasons, formulas -------------------------------------------


def test_mapped_names_get_numbers_and_each_null_a_reason() -> None:
    mapping: dict[str, str | MetricFormula] = {
        "output_tokens_per_s": "performance.output_throughput",
        "requests_per_s": "performance.requests",  # missing
        "ttft_ms": "performance.note",  # text
        "itl_ms": "performance.ok",  # a boolean is no number
        "input_tokens": "performance.nothing",  # null
    }
    found = normalize(REPORT, mapping, {})
    assert found.values == {
        "output_tokens_per_s": 512.5,
        "requests_per_s": None,
        "ttft_ms": None,
        "itl_ms": None,
        "input_tokens": None,
    }
    assert found.reasons == {
        "requests_per_s": "performance.requests is not in result.json "
        "(performance has no key 'requests')",
        "ttft_ms": 'result.json\'s performance.note is text ("fast"), not a number',
        "itl_ms": "result.json's performance.ok is a boolean, not a number",
        "input_tokens": "result.json's performance.nothing is null, not a number",
    }
    assert found.computed == {}


def test_non_finite_numbers_are_null() -> None:
    found = normalize({"x": float("nan"), "y": float("inf")}, {"ttft_ms": "x", "itl_ms": "y"}, {})
    assert found.values == {"ttft_ms": None, "itl_ms": None}
    assert found.reasons["ttft_ms"] == "result.json's x is nan, not a finite number"


def test_without_a_report_every_mapped_name_is_null_formulas_of_params_too() -> None:
    mapping: dict[str, str | MetricFormula] = {
        "output_tokens": MetricFormula(params=["num_prompts", "output_len"]),
        "requests_per_s": "requests_per_second",
    }
    found = normalize(None, mapping, {"num_prompts": 8, "output_len": 16}, no_report="gone")
    assert found.values == {"output_tokens": None, "requests_per_s": None}
    assert found.reasons == {"output_tokens": "gone", "requests_per_s": "gone"}


@pytest.mark.parametrize(
    ("formula", "params", "value"),
    [
        (MetricFormula(params=["num_prompts", "output_len"]), {}, 8 * 16),
        (MetricFormula(multiply=["num_requests"], params=["output_len"]), {}, 8 * 16),
        (
            MetricFormula(
                multiply=["num_requests"], params=["output_len"], divide_by="elapsed_time"
            ),
            {},
            8 * 16 / 2.0,
        ),
        (MetricFormula(multiply=["results.0.tokens", "results.1.tokens"]), {}, 300),
        (MetricFormula(params=["num_prompts"], divide_by="elapsed_time"), {}, 4.0),
        (MetricFormula(params=["num_prompts", "scale"]), {"scale": 0.5}, 4.0),
    ],
)
def test_a_formula_multiplies_then_divides(
    formula: MetricFormula, params: dict[str, Any], value: float
) -> None:
    all_params = {"num_prompts": 8, "output_len": 16, **params}
    assert evaluate(formula, REPORT, all_params) == (value, None)


@pytest.mark.parametrize(
    ("formula", "why"),
    [
        (
            MetricFormula(params=["num_prompts"], divide_by="zero"),
            "result.json's zero is 0: cannot divide by it",
        ),
        (
            MetricFormula(params=["num_prompts"], divide_by="elapsed"),
            "elapsed is not in result.json (the top level has no key 'elapsed')",
        ),
        (MetricFormula(params=["missing"]), "param missing is not set in this configuration"),
        (MetricFormula(params=["model"]), 'param model is text ("gpt2"), not a number'),
        (
            MetricFormula(multiply=["performance.note"]),
            'result.json\'s performance.note is text ("fast"), not a number',
        ),
        (
            MetricFormula(multiply=["huge"], divide_by="elapsed_time"),
            "the computed value is too large for a number",
        ),
    ],
)
def test_a_formula_that_cannot_be_computed_says_why(formula: MetricFormula, why: str) -> None:
    params = {"num_prompts": 8, "model": "gpt2"}
    assert evaluate(formula, REPORT, params) == (None, why)


def test_a_computed_value_says_how_it_was_made() -> None:
    formula = MetricFormula(
        multiply=["num_requests"], params=["output_len"], divide_by="elapsed_time"
    )
    found = normalize(REPORT, {"output_tokens_per_s": formula}, {"output_len": 16})
    assert found.values == {"output_tokens_per_s": 64.0}
    assert found.computed == {
        "output_tokens_per_s": "num_requests (result.json) * output_len (params) "
        "/ elapsed_time (result.json)"
    }
    assert describe(MetricFormula(params=["a", "b"])) == "a * b (params)"


# ---- the record ----------------------------------------------------------------------------------


def experiment(params: dict[str, Any]) -> Experiment:
    config = Config(backend="vllm", params=params, config_id="abc123abc123", origin=("grid",))
    return Experiment(config=config, cycle=1, service="vllm")


def outcome(exit_code: int = 0, status: str = "ok") -> ExecOutcome:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return ExecOutcome(
        status=status, exit_code=exit_code, started_at=now, ended_at=now, duration_s=1.0
    )


VLLM_MAP: dict[str, str | MetricFormula] = {
    "output_tokens": MetricFormula(multiply=["num_requests"], params=["output_len"]),
    "output_tokens_per_s": MetricFormula(
        multiply=["num_requests"], params=["output_len"], divide_by="elapsed_time"
    ),
    "requests_per_s": "requests_per_second",
    "ttft_ms": "ttft.median_ms",
}
VLLM_REPORT = {
    "elapsed_time": 4.0,
    "num_requests": 8,
    "total_num_tokens": 8 * (32 + 16),
    "requests_per_second": 2.0,
    "tokens_per_second": 96.0,
}


def build(tmp_path: Path, text: str | None, **kwargs: Any) -> Record:
    if text is not None:
        (tmp_path / "result.json").write_text(text)
    args: dict[str, Any] = {
        "attempts": 1,
        "restarts_before": 0,
        "experiment_dir": tmp_path,
        "metrics_map": VLLM_MAP,
        "measured": {"energy_j": 100.0, "measurement": {"method": "counter", "reasons": {}}},
    }
    args.update(kwargs)
    exec_outcome = args.pop("outcome", outcome())
    return record_from_outcome(
        experiment({"output_len": 16, "num_prompts": 8}), exec_outcome, **args
    )


def test_the_record_keeps_the_engine_keys_and_adds_the_normalized_names(tmp_path: Path) -> None:
    record = build(tmp_path, json.dumps(VLLM_REPORT))
    assert record.metrics == {
        **VLLM_REPORT,
        "output_tokens": 128,
        "output_tokens_per_s": 32.0,
        "requests_per_s": 2.0,
        "ttft_ms": None,
    }
    assert record.measurement is not None
    assert record.measurement["method"] == "counter"  # the energy detail is kept
    assert record.measurement["reasons"] == {
        "metrics.ttft_ms": "ttft.median_ms is not in result.json (the top level has no key 'ttft')"
    }
    assert record.measurement["computed"] == {
        "metrics.output_tokens": "num_requests (result.json) * output_len (params)",
        "metrics.output_tokens_per_s": "num_requests (result.json) * output_len (params) "
        "/ elapsed_time (result.json)",
    }
    assert record.error is None


def test_an_ok_experiment_without_report_has_every_mapped_name_null_with_reason(
    tmp_path: Path,
) -> None:
    record = build(tmp_path, None, measured=None)
    assert record.metrics is None
    assert record.measurement == {"reasons": {f"metrics.{n}": "no result.json" for n in VLLM_MAP}}
    unreadable = build(tmp_path, "{nope", measured=None)
    assert unreadable.error is not None and unreadable.error.startswith("result.json unreadable")
    assert unreadable.measurement is not None
    assert unreadable.measurement["reasons"]["metrics.output_tokens"] == unreadable.error


def test_a_failed_experiment_without_report_gets_no_metric_reasons(tmp_path: Path) -> None:
    record = build(tmp_path, None, measured=None, outcome=outcome(1, "failed"))
    assert record.metrics is None and record.measurement is None


def test_a_backend_without_metrics_records_the_report_as_it_is(tmp_path: Path) -> None:
    record = build(tmp_path, json.dumps(VLLM_REPORT), metrics_map=None)
    assert record.metrics == VLLM_REPORT
    assert record.measurement == {"method": "counter", "reasons": {}}


def test_a_normalized_name_replaces_an_engine_key_of_the_same_name(tmp_path: Path) -> None:
    report = {"requests_per_s": "many", "requests_per_second": 2.0}
    record = build(
        tmp_path, json.dumps(report), metrics_map={"requests_per_s": "requests_per_second"}
    )
    assert record.metrics == {"requests_per_s": 2.0, "requests_per_second": 2.0}


# ---- llem results: the normalized columns and energy per output token ---------------------------


def ok_record(key: str, backend: str, energy: float | None, metrics: dict[str, Any]) -> Record:
    return Record(
        key=key,
        config_id=key.split("-")[0],
        cycle=int(key.rsplit("c", 1)[1]),
        backend=backend,
        service=backend,
        params={"batch_size": 8},
        status="ok",
        energy_j=energy,
        metrics=metrics,
    )


RECORDS = [
    ok_record(
        "aaa-c1",
        "vllm",
        100.0,
        {"tokens_per_second": 9.0, "output_tokens": 50, "output_tokens_per_s": 5.0},
    ),
    ok_record(
        "aaa-c2",
        "vllm",
        120.0,
        {"tokens_per_second": 9.0, "output_tokens": 50, "output_tokens_per_s": 6.0},
    ),
    ok_record("bbb-c1", "pytorch", 40.0, {"tokens": 20, "output_tokens": 20}),
]


def test_energy_per_output_token_is_the_default_and_named_per_token() -> None:
    groups = {g.label["backend"]: g for g in aggregate(RECORDS)}
    vllm = groups["vllm"].quantities
    assert vllm["energy_per_output_token_j"].mean == pytest.approx(2.2)
    assert "energy_per_tokens_j" not in vllm  # output_tokens wins over the script's tokens
    assert groups["pytorch"].quantities["energy_per_output_token_j"].mean == pytest.approx(2.0)
    # the normalized names come first, in their own order, then the engine's keys
    names = [n for n in vllm if n.startswith("metrics.")]
    assert names == [
        "metrics.output_tokens",
        "metrics.output_tokens_per_s",
        "metrics.tokens_per_second",
    ]


def test_per_still_chooses_the_count() -> None:
    groups = {g.label["backend"]: g for g in aggregate(RECORDS, per=["tokens"])}
    pytorch = groups["pytorch"].quantities
    assert pytorch["energy_per_tokens_j"].mean == pytest.approx(2.0)
    assert "energy_per_output_token_j" not in pytorch
    per_output = aggregate(RECORDS, per=["output_tokens"])
    assert "energy_per_output_token_j" in per_output[0].quantities


def test_tokens_stays_the_default_where_nothing_is_normalized() -> None:
    records = [ok_record("ccc-c1", "pytorch", 40.0, {"tokens": 20})]
    assert aggregate(records)[0].quantities["energy_per_tokens_j"].mean == pytest.approx(2.0)


def test_the_records_csv_has_a_column_per_normalized_name() -> None:
    odd = ok_record("ddd-c1", "sglang", None, {"output_tokens": 0, "ttft_ms": True})
    rows = list(csv.DictReader(io.StringIO(csv_text([*RECORDS, odd]))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert CSV_COLUMNS[-7:] == (
        *(f"metrics.{n}" for n in METRIC_NAMES),
        "energy_per_output_token_j",
    )
    first = rows[0]
    assert first["metrics.output_tokens"] == "50"
    assert first["metrics.output_tokens_per_s"] == "5.0"
    assert first["metrics.requests_per_s"] == ""  # not reported: empty, never 0
    assert float(first["energy_per_output_token_j"]) == pytest.approx(2.0)
    last = rows[-1]  # no energy, a count of 0, a boolean: nothing to divide, nothing to show
    assert (last["energy_per_output_token_j"], last["metrics.ttft_ms"]) == ("", "")
    assert last["metrics.output_tokens"] == "0"
    assert json.loads(first["metrics"])["tokens_per_second"] == 9.0  # the JSON cell stays
