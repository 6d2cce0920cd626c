"""End to end: ``backends.<name>.metrics`` through a real ``llem run`` on the busybox image.

One backend's client writes a nested, pretty-printed JSON report; another appends two JSON
lines with a line of noise between them, as SGLang's ``--result-filename`` appends a line per
run. The records must carry each engine's own keys and llem's normalized names (values from
the paths, one computed from a param and the report, the last JSON line's values), a missing
or non-numeric path as null with its reason in ``measurement.reasons``; ``results.csv`` and
``llem results --format csv`` must have the normalized columns, and ``--stats`` the
normalized quantities of both backends.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from llem_testkit.e2e import E2ECampaign, assert_no_containers, no_traceback, plan, records

pytestmark = pytest.mark.docker

#: a nested report over several lines, ``tokens`` and ``elapsed_s`` from the experiment's params
NESTED_REPORT = (
    'printf "{\\n  \\"performance\\": {\\"output_throughput\\": 12.5},\\n'
    '  \\"results\\": [{\\"tokens\\": %s}],\\n  \\"elapsed_s\\": 2,\\n'
    '  \\"label\\": \\"fast\\"\\n}\\n" {batch_size} > {experiment_dir}/result.json'
)
#: two JSON lines appended, noise between them: the last object line is the report
APPENDED_LINES = (
    "f={experiment_dir}/result.json; "
    'echo \'{"output_throughput": 1.0, "total_output_tokens": 10}\' >> $f; '
    "echo 'warming up...' >> $f; "
    'echo \'{"output_throughput": 2.0, "total_output_tokens": {batch_size}0}\' >> $f'
)


def test_normalized_metrics_from_nested_json_and_json_lines(campaign: E2ECampaign) -> None:
    c = campaign
    c.write(
        {
            "nested": {
                "command": ["sh", "-c", NESTED_REPORT],
                "metrics": {
                    "output_tokens": "results.0.tokens",
                    "output_tokens_per_s": "performance.output_throughput",
                    "requests_per_s": {"params": ["batch_size"], "divide_by": "elapsed_s"},
                    "ttft_ms": "latency.ttft_ms",  # not in the report
                    "itl_ms": "label",  # text, not a number
                },
            },
            "lines": {
                "command": ["sh", "-c", APPENDED_LINES],
                "metrics": {
                    "output_tokens": "total_output_tokens",
                    "output_tokens_per_s": "output_throughput",
                },
            },
        },
        grid={"backend": ["nested", "lines"], "batch_size": [1, 4]},
    )
    done = c.llem("run", c.file, "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    no_traceback(done.stdout, done.stderr)

    run = c.run_dir()
    recs = records(run)
    by_key = {item["key"]: item for item in plan(c)}
    assert len(recs) == 4
    for key, rec in recs.items():
        assert rec["status"] == "ok", rec
        bs = by_key[key]["params"]["batch_size"]
        metrics, detail = rec["metrics"], rec["measurement"]
        if rec["backend"] == "nested":
            assert metrics["performance"] == {"output_throughput": 12.5}  # the engine's keys stay
            assert metrics["label"] == "fast"
            assert metrics["output_tokens"] == bs
            assert metrics["output_tokens_per_s"] == 12.5
            assert metrics["requests_per_s"] == bs / 2
            assert metrics["ttft_ms"] is None and metrics["itl_ms"] is None
            reasons = detail["reasons"]
            assert reasons["metrics.ttft_ms"] == (
                "latency.ttft_ms is not in result.json (the top level has no key 'latency')"
            )
            assert (
                reasons["metrics.itl_ms"] == 'result.json\'s label is text ("fast"), not a number'
            )
            assert detail["computed"] == {
                "metrics.requests_per_s": "batch_size (params) / elapsed_s (result.json)"
            }
        else:
            assert metrics == {
                "output_throughput": 2.0,
                "total_output_tokens": bs * 10,
                "output_tokens": bs * 10,
                "output_tokens_per_s": 2.0,
            }
            assert not any(k.startswith("metrics.") for k in detail.get("reasons", {}))
            assert "computed" not in detail

    # results.csv and `llem results --format csv`: a column per normalized name
    printed = c.llem("results", c.file, "--format", "csv")
    assert printed.returncode == 0, printed.stderr
    rows = list(csv.DictReader(io.StringIO(printed.stdout)))
    with (run / "results.csv").open(newline="") as f:
        assert list(csv.DictReader(f)) == rows
    columns = list(rows[0])
    for name in ("output_tokens", "output_tokens_per_s", "requests_per_s", "ttft_ms", "itl_ms"):
        assert f"metrics.{name}" in columns
    assert "energy_per_output_token_j" in columns
    for row in rows:
        bs = by_key[row["key"]]["params"]["batch_size"]
        want = bs if row["backend"] == "nested" else bs * 10
        assert int(row["metrics.output_tokens"]) == want
        assert row["metrics.ttft_ms"] == ""  # null: an empty cell, never 0
        assert json.loads(row["metrics"])["output_tokens"] == want

    # --stats: the normalized quantities for both backends, side by side
    stats = c.llem("results", c.file, "--format", "csv", "--stats", "--group-by", "backend")
    assert stats.returncode == 0, stats.stderr
    quantities = {
        (r["group.backend"], r["quantity"]): r for r in csv.DictReader(io.StringIO(stats.stdout))
    }
    assert float(quantities[("nested", "metrics.output_tokens_per_s")]["mean"]) == 12.5
    assert float(quantities[("lines", "metrics.output_tokens_per_s")]["mean"]) == 2.0
    assert quantities[("lines", "metrics.output_tokens")]["n"] == "2"
    assert_no_containers(c, run.name)
