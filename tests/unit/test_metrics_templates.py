"""Each shipped engine's ``metrics:`` (llem_cli/templates) read against a report of that
engine's shape, so a renamed or mistyped key fails here rather than as nulls after a GPU run.

The reports are written from the engines' sources (the keys each one's JSON writer emits):
vLLM ``vllm/benchmarks/throughput.py`` (``--output-json``), SGLang
``python/sglang/bench_offline_throughput.py`` (``--result-filename``, one JSON line appended
per run), TensorRT-LLM ``tensorrt_llm/bench/dataclasses/reporting.py`` (``--report_json``);
the transformers script's report is made by the script itself, on a fake generator.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from llem_cli.campaign.model import METRIC_NAMES, Metrics
from llem_cli.runner.metrics import normalize, parse_report
from llem_cli.templates import BACKENDS, metrics_block
from llem_testkit.scripts import load_script

PARAMS = {"num_prompts": 8, "input_len": 32, "output_len": 16, "batch_size": 4}

# vllm bench throughput --output-json: elapsed_time, num_requests, total_num_tokens (prompt +
# output), requests_per_second, tokens_per_second (prompt + output, per second)
VLLM = {
    "elapsed_time": 4.0,
    "num_requests": 8,
    "total_num_tokens": 8 * (32 + 16),
    "requests_per_second": 2.0,
    "tokens_per_second": 96.0,
}

# python -m sglang.bench_offline_throughput --result-filename: a line per run, appended
SGLANG_LINE = {
    "backend": "engine",
    "successful_requests": 8,
    "total_latency": 2.0,
    "total_input_tokens": 256,
    "total_output_tokens": 128,
    "request_throughput": 4.0,
    "input_throughput": 128.0,
    "output_throughput": 64.0,
    "total_throughput": 192.0,
}

# trtllm-bench throughput --report_json (the parts the mapping reads, and their neighbours)
TENSORRT = {
    "engine": {"model": "m", "backend": "Pytorch"},
    "request_info": {
        "num_requests": 8,
        "avg_num_concurrent_requests": 4.0,
        "avg_input_length": 32.0,
        "avg_output_length": 16.0,
    },
    "performance": {
        "total_latency_ms": 2000.0,
        "avg_request_latency_ms": 900.0,
        "request_throughput_req_s": 4.0,
        "system_output_throughput_tok_s": 64.0,
        "system_total_throughput_tok_s": 192.0,
    },
}


def transformers_report() -> dict[str, Any]:
    """The shipped transformers script's report, on a generator that returns its token count."""
    bench = load_script("llem_generate_bench.py")
    args = bench.parse_args(
        ["--model", "fake", "--batch-size", "4", "--num-prompts", "8", "--input-len", "32",
         "--output-len", "16", "--warmup", "1", "--out", "r.json"]
    )  # fmt: skip
    ticks = iter(range(1000))
    report: dict[str, Any] = bench.run_benchmark(
        lambda size: size * args.output_len, args, clock=lambda: float(next(ticks))
    )
    return report


def reports() -> dict[str, str]:
    """Each engine's result.json text as the engine writes it."""
    return {
        "pytorch": json.dumps(transformers_report(), indent=2),
        "vllm": json.dumps(VLLM, indent=4),
        "sglang": json.dumps({**SGLANG_LINE, "total_latency": 99.0})
        + "\n"
        + json.dumps(SGLANG_LINE)
        + "\n",
        "tensorrt": json.dumps(TENSORRT, indent=2),
    }


def mapping_of(backend: str) -> Metrics:
    """The template's metrics as a campaign reads them."""
    return Metrics.model_validate(
        {m.name: yaml.safe_load(m.source) for m in BACKENDS[backend].metrics}
    )


def test_every_engine_has_a_report_here() -> None:
    assert set(reports()) == set(BACKENDS)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_mapped_name_is_found_and_is_a_number(backend: str) -> None:
    report, why = parse_report(reports()[backend])
    assert why is None
    found = normalize(report, mapping_of(backend).mapped(), PARAMS)
    assert found.reasons == {}
    assert all(isinstance(v, int | float) for v in found.values.values())
    # the same workload (8 prompts of 32 tokens, 16 new tokens each) counts alike everywhere
    assert found.values["output_tokens"] == 8 * 16
    if "input_tokens" in found.values:
        assert found.values["input_tokens"] == 8 * 32


def test_the_values_are_the_engines_own() -> None:
    vllm = normalize(VLLM, mapping_of("vllm").mapped(), PARAMS)
    # output tokens per second, not tokens_per_second (which counts the prompts too)
    assert vllm.values == {"output_tokens": 128, "output_tokens_per_s": 32.0, "requests_per_s": 2.0}
    assert set(vllm.computed) == {"output_tokens", "output_tokens_per_s"}
    sglang_report, _ = parse_report(reports()["sglang"])
    sglang = normalize(sglang_report, mapping_of("sglang").mapped(), PARAMS)
    assert sglang.values["output_tokens_per_s"] == 64.0  # the last line's, not the first's
    assert sglang.computed == {}  # SGLang reports every mapped quantity itself
    tensorrt = normalize(TENSORRT, mapping_of("tensorrt").mapped(), PARAMS)
    assert tensorrt.values["output_tokens_per_s"] == 64.0
    assert tensorrt.values["requests_per_s"] == 4.0


def test_no_engine_maps_a_quantity_to_a_prompt_plus_output_rate() -> None:
    """``tokens_per_second`` and ``total_throughput`` count prompt tokens: never output rates."""
    for backend in BACKENDS:
        for metric in BACKENDS[backend].metrics:
            assert "tokens_per_second" not in metric.source, backend
            assert "total_throughput" not in metric.source, backend


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_the_rendered_block_is_the_mapping_with_a_comment_per_line(backend: str) -> None:
    block = metrics_block(backend, 4)
    assert Metrics.model_validate(yaml.safe_load(block)["metrics"]) == mapping_of(backend)
    assert all(len(line) <= 100 for line in block.splitlines())
    for metric in BACKENDS[backend].metrics:
        assert metric.name in METRIC_NAMES
        assert metric.comment, f"{backend}.{metric.name}: say which key of the engine it reads"
